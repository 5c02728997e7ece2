"""Write the numbered notebooks in ``notebooks/`` from the cell sources below (stripped, with nbformat).

Usage: ``.venv/bin/python tools/build_notebooks.py [NAME ...]`` (default: all). The notebooks are
the product; this file is their reviewable source. After editing a notebook in JupyterLab, either
copy the change here or strip the notebook with ``tools/build_notebooks.py --strip notebooks/X.ipynb``.

Cells: ``md(...)`` markdown, ``code(...)`` code, ``params(...)`` the papermill ``parameters`` cell.
Notebooks hold no ``def``/``class`` except 00 (a naive loop beside the library function).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


def params(text: str):
    c = new_code_cell(text.strip("\n"))
    c.metadata["tags"] = ["parameters"]
    return c


SETUP_IMPORTS = "from contextclip.notebook_utils import profile_paths, setup_notebook, show_figure, show_markdown, show_table"

# ----------------------------------------------------------------------------------------------
NB00 = [
    md(r"""
# 00 · The contextual loss, explained

**Purpose.** Learn what ContextCLIP adds to CLIP: the loss of Eq. 1,
$\mathcal{L} = \mathcal{L}_{CLIP} + \alpha\,\mathcal{L}_{CX}$, term by term, with the paper's
equations beside the library code (`contextclip.losses`). We check the library against a naive
loop, look at how $\mathcal{L}_{CX}$ behaves on aligned, shuffled and random pairs for each of the
three readings of "point", see what the bandwidth $h$ does, and why the paper's "cosine similarity"
in Eq. 6 has to be a *distance*.

**Inputs.** None: toy embeddings drawn here with the profile's batch size and embedding size.
**Outputs.** Figures shown inline and saved to `figures/<profile>/00_cx_*.png`.
**Runtime.** About 10 s for every profile (CPU; nothing is trained).
"""),
    params("""
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
batch_size = None  # N, the number of image-text pairs in a toy batch (None: the profile value)
embed_dim = None  # D, the size of the joint embedding (None: the profile value, 256 in the paper)
bandwidth = None  # h of Eq. 7 (None: the profile value, 0.5)
cx_eps = None  # epsilon of Eq. 6 (None: the profile value, 1e-5)
seeds = None  # the first seed draws the toy embeddings (None: the profile value)
"""),
    code(f"""
import math

import matplotlib.pyplot as plt
import pandas as pd
import torch

from contextclip.losses import CX_VARIANTS, ContextCLIPLoss, clip_loss, contextual_loss
{SETUP_IMPORTS}

cfg = setup_notebook(profile, batch_size=batch_size, embed_dim=embed_dim, bandwidth=bandwidth,
                     cx_eps=cx_eps, seeds=seeds)
N, D = cfg.train.batch_size, cfg.model.embed_dim
h, eps = cfg.loss.bandwidth, cfg.loss.cx_eps
figures = profile_paths(cfg).figures
gen = torch.Generator().manual_seed(cfg.train.seeds[0])
print(f"toy batch: N = {{N}} pairs, D = {{D}} dimensions, h = {{h}}, eps = {{eps}}")
"""),
    md(r"""
## 1. Toy embeddings

A batch of $N$ captions embedded as text vectors $u_i \in \mathbb{R}^D$, and three kinds of image
embeddings $v_i$ to compare against them:

- **aligned**: each image is its caption's vector plus 5 % noise (a well-trained model);
- **shuffled**: the aligned images in a random order (right content, wrong pairing);
- **random**: unrelated vectors (an untrained model).
"""),
    code("""
text = torch.randn(N, D, generator=gen)
noise = torch.randn(N, D, generator=gen) * text.norm(dim=1, keepdim=True) / math.sqrt(D)
batches = {
    "aligned": text + 0.05 * noise,
    "shuffled": (text + 0.05 * noise)[torch.randperm(N, generator=gen)],
    "random": torch.randn(N, D, generator=gen),
}
show_table({name: {"mean cosine with its caption": torch.cosine_similarity(img, text).mean().item()}
            for name, img in batches.items()}, caption="How close each image is to its own caption")
"""),
    md(r"""
## 2. The CLIP loss (Eq. 2-4)

With L2-normalised embeddings, $\langle v_i, u_k\rangle$ is a cosine. Image $i$ should pick its own
caption among the $N$ (Eq. 2), caption $i$ its own image (Eq. 3), weighted $\lambda = 0.75$ towards
image$\to$text (Eq. 4):

$$\ell_i^{(v\to u)} = -\log \frac{\exp(\langle v_i, u_i\rangle/\tau)}{\sum_k \exp(\langle v_i, u_k\rangle/\tau)},\qquad
\mathcal{L}_{CLIP} = \frac1N\sum_i \lambda\,\ell_i^{(v\to u)} + (1-\lambda)\,\ell_i^{(u\to v)}$$

(the paper writes the $\log$ without the minus sign; a loss to minimise needs it). The naive loop
below is the equation, one pair at a time; `clip_loss` is the library's batched version.
"""),
    code("""
def naive_clip_loss(v, u, tau=1.0, lam=0.75):
    \"\"\"Eq. 2-4 with Python loops, for checking only.\"\"\"
    v = [x / x.norm() for x in v]
    u = [x / x.norm() for x in u]
    n = len(v)
    total = 0.0
    for i in range(n):
        i2t = -math.log(math.exp(float(v[i] @ u[i]) / tau) / sum(math.exp(float(v[i] @ u[k]) / tau) for k in range(n)))
        t2i = -math.log(math.exp(float(u[i] @ v[i]) / tau) / sum(math.exp(float(u[i] @ v[k]) / tau) for k in range(n)))
        total += lam * i2t + (1 - lam) * t2i
    return total / n


tau = 0.1
rows = []
for name, img in batches.items():
    rows.append({"batch": name, "naive loop": naive_clip_loss(img, text, tau),
                 "clip_loss": clip_loss(img, text, temperature=tau).item()})
clip_table = pd.DataFrame(rows).set_index("batch")
assert all(abs(a - b) < 1e-4 for a, b in zip(clip_table["naive loop"], clip_table["clip_loss"]))
show_table(clip_table, caption=f"CLIP loss at tau = {tau}: the loop and the library agree", floatfmt="{:.5f}")
"""),
    md(r"""
The shuffled batch has the same images as the aligned one, yet its CLIP loss is as high as the
random batch's: the contrastive loss is about **pairing**.

## 3. The contextual loss (Eq. 5-9)

Take the image embeddings as the "generated" points $x_i$ and the text embeddings as the targets $y_j$.
Both sets are centred on the mean of the targets and L2-normalised (as in Mechrez et al. 2018; the
paper does not say). Then

| Eq. | meaning | code in `contextclip/losses.py` |
|---|---|---|
| 6 | $\tilde d_{ij} = d_{ij} / (\min_k d_{ik} + \epsilon)$, distance relative to $x_i$'s nearest target | `d_tilde = d / (d_min + eps)` |
| 7 | $w_{ij} = \exp\big((1-\tilde d_{ij})/h\big)$, from distances to similarities | inside the softmax |
| 8 | $CX_{ij} = w_{ij} / \sum_k w_{ik}$, normalised over the targets | `torch.softmax((1 - d_tilde) / h, dim=-1)` |
| 5 | $CX = \frac1N \sum_j \max_i CX_{ij}$, each target's best match | `cx_ij.amax(dim=-2).mean(dim=-1)` |
| 9 | $\mathcal{L}_{CX} = -\log CX$ | `-torch.log(cx)` |

with $d_{ij} = 1 - \cos(x_i, y_j)$, a cosine **distance** (section 6 explains why). The paper's
Eq. 5 reads $\max_j$; the max is over the generated points $i$, as in Mechrez et al.
Since $1/N \le CX \le 1$, we have $0 \le \mathcal{L}_{CX} \le \log N$.

The naive version, one point pair at a time:
"""),
    code("""
def naive_cx_loss(x, y, h=0.5, eps=1e-5, distance=True, centre=True):
    \"\"\"Eq. 5-9 with Python loops. x: generated points, y: target points (lists of vectors).\"\"\"
    mu = sum(y) / len(y) if centre else 0 * y[0]            # mean of the targets
    x = [(p - mu) / (p - mu).norm() for p in x]             # centre on it, L2-normalise
    y = [(q - mu) / (q - mu).norm() for q in y]
    cx = []
    for xi in x:
        cos = [float(xi @ yj) for yj in y]
        d = [max(1.0 - c, 0.0) for c in cos] if distance else cos   # d_ij (a distance, or the paper's wording)
        d_min = min(d)
        w = [math.exp((1.0 - dij / (d_min + eps)) / h) for dij in d]  # Eq. 6-7
        cx.append([wij / sum(w) for wij in w])                        # Eq. 8: one row per x_i
    cx_score = sum(max(cx[i][j] for i in range(len(x))) for j in range(len(y))) / len(y)  # Eq. 5
    return -math.log(cx_score)                                         # Eq. 9


def unit(v):
    return v / v.norm(dim=1, keepdim=True)


def naive_variant(variant, img, txt, h, eps):
    \"\"\"The three readings of 'point', built from the naive loop.\"\"\"
    img, txt = unit(img), unit(txt)
    if variant == "batch":                # the N batch items are the points
        return naive_cx_loss(list(img), list(txt), h, eps)
    if variant == "feature_columns":      # the D embedding dimensions are the points (vectors over the batch)
        return naive_cx_loss(list(img.T), list(txt.T), h, eps)
    losses = []                           # per_sample_features: the D scalars of one sample are the points
    for xs, ys in zip(img, txt):
        mu = ys.mean()
        xs, ys = (xs - mu) / (xs - mu).norm(), (ys - mu) / (ys - mu).norm()
        cx = []
        for xi in xs:
            d = [max(1.0 - float(xi * yj), 0.0) for yj in ys]
            w = [math.exp((1.0 - dij / (min(d) + eps)) / h) for dij in d]
            cx.append([wij / sum(w) for wij in w])
        losses.append(-math.log(sum(max(col) for col in zip(*cx)) / len(ys)))
    return sum(losses) / len(losses)


small = {k: v[:8, :16] for k, v in batches.items()}  # the per-sample loop is D*D per sample: keep it small
rows = []
for variant in CX_VARIANTS:
    for name, img in small.items():
        rows.append({"variant": variant, "batch": name,
                     "naive loop": naive_variant(variant, img, text[:8, :16], h, eps),
                     "contextual_loss": contextual_loss(img, text[:8, :16], h, eps, variant).item()})
check = pd.DataFrame(rows).set_index(["variant", "batch"])
assert ((check["naive loop"] - check["contextual_loss"]).abs() < 1e-4).all(), check
show_table(check, caption="Naive loop vs library on an 8 x 16 slice: they agree", floatfmt="{:.5f}")
"""),
    md(r"""
## 4. How $\mathcal{L}_{CX}$ behaves: aligned, shuffled, random

Now the full $N \times D$ batch, for each variant. The three variants differ in what a "point" is:

- `batch` (our default): the $N$ image and $N$ text embeddings of the batch are the points;
- `feature_columns`: each of the $D$ embedding dimensions is a point, a vector over the batch;
- `per_sample_features`: for one pair, each of the $D$ scalar features is a point (what the authors'
  public code for a sibling project does); the loss is averaged over the batch.
"""),
    code("""
rows = []
for variant in CX_VARIANTS:
    row = {"variant": variant}
    for name, img in batches.items():
        row[name] = contextual_loss(img, text, h, eps, variant).item()
    row["log N or log D (max)"] = math.log(N) if variant == "batch" else math.log(D)
    rows.append(row)
behaviour = pd.DataFrame(rows).set_index("variant")
show_table(behaviour, caption=f"L_CX (h = {h}) on the three kinds of batch", floatfmt="{:.3f}")

fig, ax = plt.subplots(figsize=(7, 3.2))
behaviour[list(batches)].plot.bar(ax=ax, rot=0)
ax.set_ylabel("contextual loss $L_{CX}$")
ax.set_title(f"Contextual loss by variant (N = {N}, D = {D}, h = {h})")
show_figure(fig, figures / "00_cx_variants.png")
"""),
    md(r"""
What to read in the table:

- `batch` separates aligned from random, but gives the **shuffled** batch the same loss as the
  aligned one: it compares the two *sets* of embeddings and ignores which image goes with which
  caption. Only the CLIP term (section 2) enforces the pairing; $\mathcal{L}_{CX}$ can only add
  "the two clouds have the same shape".
- `feature_columns` notices the shuffle (permuting the batch changes every column vector).
- `per_sample_features` gives about $\log D$ for all three: on unit vectors in $\mathbb{R}^D$ each
  scalar is about $\pm 1/\sqrt D$, so all distances are close to 1, every $w_{ij}$ is about the
  same and $CX \approx 1/D$. It carries almost no alignment signal.

The combined loss of Eq. 1 returns each term by name; with $\alpha = 0$ it is exactly the CLIP loss:
"""),
    code("""
loss_fn = ContextCLIPLoss(alpha=cfg.loss.alpha, bandwidth=h, eps=eps, variant=cfg.loss.cx_variant)
terms = {name: {k: v.item() for k, v in loss_fn(img, text, logit_scale=1 / tau).items()}
         for name, img in batches.items()}
show_table(pd.DataFrame(terms).T, caption=f"ContextCLIPLoss (alpha = {cfg.loss.alpha}, tau = {tau})", floatfmt="{:.3f}")
baseline = ContextCLIPLoss(alpha=0.0)(batches["random"], text, logit_scale=1 / tau)
assert baseline["loss"].item() == clip_loss(batches["random"], text, temperature=tau).item()
"""),
    md(r"""
## 5. What the bandwidth $h$ does

$h$ sets how sharply Eq. 7-8 prefer the nearest target. Small $h$: $CX_{ij}$ is nearly one-hot
on $x_i$'s nearest target, and $CX$ counts how many targets are someone's nearest neighbour (a
template-matching count). Large $h$: every row of $CX_{ij}$ tends to uniform, $CX \to 1/N$ and
$\mathcal{L}_{CX} \to \log N$ whatever the embeddings. Below: the loss over $h$ for the aligned
batch, a noisier batch (50 % noise) and the random batch.
"""),
    code("""
hs = [0.01, 0.03, 0.1, 0.3, 0.5, 1.0, 3.0, 10.0]
sweep_batches = {"aligned": batches["aligned"], "50% noise": text + 0.5 * noise, "random": batches["random"]}
sweep = pd.DataFrame({name: [contextual_loss(img, text, hh, eps).item() for hh in hs]
                      for name, img in sweep_batches.items()}, index=pd.Index(hs, name="h"))
show_table(sweep, caption="L_CX (batch variant) as a function of the bandwidth h", floatfmt="{:.3f}")

fig, ax = plt.subplots(figsize=(6, 3.2))
for name in sweep:
    ax.plot(sweep.index, sweep[name], marker="o", label=name)
ax.axhline(math.log(N), color="grey", ls=":", label="log N (upper bound)")
ax.axvline(h, color="k", lw=0.8, ls="--", label=f"profile h = {h}")
ax.set_xscale("log")
ax.set_xlabel("bandwidth h")
ax.set_ylabel("$L_{CX}$")
ax.legend(fontsize=8)
show_figure(fig, figures / "00_cx_bandwidth.png")
"""),
    md(r"""
Around $h = 0.5$ (the de-facto standard with cosine distances, and our default) the loss separates
aligned from random clearly. With very small $h$ even random batches score well (the nearest-neighbour
count of random points is not small), and with large $h$ everything drifts towards $\log N$.

## 6. Why the "cosine similarity" of Eq. 6 must be a distance

The paper says $d_{ij}$ is "the cosine similarity of $u_i$ and $v_j$". Eq. 6 divides by the row
minimum, and Eq. 7 gives the largest weight to the *smallest* $\tilde d_{ij}$: both assume
$d_{ij} \ge 0$ with 0 meaning "identical", which is a distance. With a similarity the outcome
depends on the sign of the row minimum:

- if the smallest similarity in a row is negative (it usually is after centring), dividing by it
  flips the order, and the loss happens to work;
- if all similarities in a row are positive (embeddings without centring in the positive orthant,
  e.g. after a ReLU), the best match gets the *largest* $\tilde d$ and the smallest weight: the loss
  no longer tells aligned from random;
- a minimum near zero makes $\tilde d$ explode.

The naive loop with `distance=False` reads Eq. 6 literally. Here it is on the aligned and random
batches, first centred (as above), then with all embeddings made positive (`abs`) and not centred:
"""),
    code("""
rows = []
for prep, centre in [("centred on the targets' mean", True), ("all positive (abs), not centred", False)]:
    for name in ("aligned", "random"):
        img, txt = unit(batches[name]), unit(text)
        if not centre:
            img, txt = img.abs(), txt.abs()
        rows.append({"embeddings": prep, "batch": name,
                     "d = 1 - cos (distance)": naive_cx_loss(list(img), list(txt), h, eps, True, centre),
                     "d = cos (similarity, literal)": naive_cx_loss(list(img), list(txt), h, eps, False, centre)})
similarity = pd.DataFrame(rows).set_index(["embeddings", "batch"])
show_table(similarity, caption="The literal reading only works by luck of sign", floatfmt="{:.3f}")
"""),
    md(r"""
With the distance, aligned pairs score near 0 and random ones near $\log N$ in both cases. With the
literal similarity the result depends on the sign of the row minimum, i.e. on the preprocessing; that is why the library uses $d_{ij} = 1 - \cos$
(see `docs/decisions.md`, "contextual loss").

**Next:** `01_data.ipynb`, what the models are trained and evaluated on.
"""),
]


RUNTIME = ("**Runtime.** smoke: {smoke} (measured on 2 busy CPU cores); embedded: {embedded} (estimate, 2 CPU "
           "cores); paper: {paper} (estimate, one GPU).")

# ----------------------------------------------------------------------------------------------
NB01 = [
    md(r"""
# 01 · The data: what each profile trains and evaluates on

**Purpose.** See the image-caption pairs the models are trained on, the evaluation sets behind
Table 1/2, the t-SNE figures and retrieval, with counts and sample grids; and learn how to bring
your own `image,caption` manifest.

**Inputs.** The profile's datasets (`contextclip.data`): generated on first use for smoke and
embedded (cached under `data/`), prepared beforehand for paper (`make data PROFILE=paper`).
**Outputs.** Sample grids in `figures/<profile>/01_*.png`; nothing else is written.
""" + "\n" + RUNTIME.format(smoke="about 15 s", embedded="about 1 min the first time (generation), then seconds",
                            paper="minutes (reads every set once)")),
    params("""
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
train_data = None  # pretraining pairs: synthetic | manifest | cc3m | flickr8k (None: the profile value)
n_pairs = None  # number of pretraining pairs (None: the profile value)
manifest = None  # path to an image,caption CSV when train_data is "manifest" (None: the profile value)
eval_max_images = None  # cap per evaluation set, 0 means all (None: the profile value)
"""),
    code(f"""
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from contextclip.data import build_pair_datasets
from contextclip.data.registry import DATASETS, get_dataset
from contextclip.notebook_utils import image_grid, knob_table
{SETUP_IMPORTS}

cfg = setup_notebook(profile, train_data=train_data, n_pairs=n_pairs, manifest=manifest,
                     eval_max_images=eval_max_images)
figures = profile_paths(cfg).figures
"""),
    md("""
## 1. The pretraining pairs

The profile's data knobs (one name per knob, as in `configs/<profile>.yaml`):
"""),
    code("""
show_table(knob_table(cfg, ["train_data", "n_pairs", "image_size", "val_fraction", "augment", "manifest"]))
train_ds, val_ds = build_pair_datasets(cfg)
show_table({"split": ["train", "validation"], "pairs": [len(train_ds), len(val_ds)]},
           caption="Pretraining pairs (the validation pairs only give the validation loss)")
stats = train_ds.report.get("stats", {})
if stats:  # the generated corpus describes itself: variety and balance
    show_table([{"what": k, "value": v if not isinstance(v, dict) else ", ".join(f"{a}: {b}" for a, b in v.items())}
                for k, v in stats.items()], caption="The generated corpus")
"""),
    md("""
Twelve validation pairs as the model sees them (images already resized to the profile's
`image_size`; the caption is the text the text tower reads):
"""),
    code("""
samples = [val_ds[i] for i in range(min(12, len(val_ds)))]
fig = image_grid([img for img, _ in samples], [cap for _, cap in samples], ncols=6,
                 title=f"{cfg.data.train_data}: validation pairs ({cfg.profile})")
show_figure(fig, figures / "01_pairs_val.png")
"""),
    md("""
The first six training pairs as epoch 0 and epoch 1 see them: with `augment: true` each epoch
draws a new, seeded augmentation and one of the image's captions (the validation pairs above are
never augmented).
"""),
    code("""
samples = []
for epoch in (0, 1):
    train_ds.set_epoch(epoch)
    samples += [train_ds[i] for i in range(6)]
train_ds.set_epoch(0)
fig = image_grid([img for img, _ in samples], [cap for _, cap in samples], ncols=6,
                 title=f"training pairs: epoch 0 (top), epoch 1 (bottom); augment = {cfg.data.augment}")
show_figure(fig, figures / "01_pairs_train.png")
"""),
    md("""
## 2. The evaluation sets

Each evaluation set is a registry entry (`contextclip.data.registry.DATASETS`). Classification sets
carry class names and prompt templates (zero-shot, Table 1; fine-tuning, Table 2; t-SNE, Fig. 6/7);
caption sets carry several captions per image (retrieval, Fig. 1/5). The profile uses:
"""),
    code("""
uses = {}
for name in cfg.data.zero_shot_datasets:
    uses.setdefault(name, []).append("zero-shot")
for name in cfg.data.fine_tune_datasets:
    uses.setdefault(name, []).append("fine-tune")
uses.setdefault(cfg.data.tsne_dataset, []).append("t-SNE")
uses.setdefault(cfg.data.retrieval_dataset, []).append("retrieval")

eval_sets, rows = {}, []
for name, used_for in uses.items():
    ds = get_dataset(name, cfg)
    eval_sets[name] = ds
    if hasattr(ds, "classnames"):
        rows.append({"dataset": name, "kind": "classes", "used for": ", ".join(used_for), "images": len(ds.labels),
                     "classes / captions": len(ds.classnames), "templates": str(len(ds.templates)),
                     "example text": ds.templates[0].format(ds.classnames[0])})
    else:
        rows.append({"dataset": name, "kind": "captions", "used for": ", ".join(used_for), "images": len(ds.captions),
                     "classes / captions": sum(len(c) for c in ds.captions), "templates": "-",
                     "example text": ds.captions[0][0]})
show_table(rows, caption=f"Evaluation sets of the {cfg.profile} profile (registry: {len(DATASETS)} sets)")
"""),
    md("""
One image per class for each classification set, and the first caption of a few images of the
caption set:
"""),
    code("""
for name, ds in eval_sets.items():
    if hasattr(ds, "classnames"):
        labels = torch.as_tensor(ds.labels)
        first = [int((labels == c).nonzero()[0]) for c in range(len(ds.classnames)) if (labels == c).any()][:12]
        imgs = ds.images[first] if isinstance(ds.images, torch.Tensor) else [ds.images[i][0] for i in first]
        titles = [ds.classnames[int(labels[i])] for i in first]
    else:
        first = list(range(min(6, len(ds.captions))))
        imgs = ds.images[first] if isinstance(ds.images, torch.Tensor) else [ds.images[i][0] for i in first]
        titles = [ds.captions[i][0] for i in first]
    show_figure(image_grid(imgs, titles, ncols=6, title=name), figures / f"01_{name}.png")
"""),
    md("""
## 3. Bring your own pairs: an `image,caption` manifest

To pretrain on your own data, write a CSV with a header and one row per pair: `image` is a path
(absolute, or relative to the CSV's folder), `caption` the text. Check it before training:

```bash
python -m contextclip data check my_pairs.csv            # names every bad row, exit 1 if any
python -m contextclip data check my_pairs.csv --skip-bad # also writes a cleaned copy beside it
```

then train with `train_data: manifest` and `manifest: my_pairs.csv` (a profile YAML with
`base: embedded`, or `--set train_data=manifest --set manifest=my_pairs.csv`). Below, a tiny
manifest from three validation pairs plus two bad rows, checked with the same command:
"""),
    code("""
from PIL import Image

demo = Path(tempfile.mkdtemp(prefix="manifest_demo_"))
lines = ["image,caption"]
for i in range(3):
    img, cap = val_ds[i]
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(demo / f"pair{i}.png")
    lines.append(f'pair{i}.png,"{cap}"')
lines += ["missing.png,an image that is not there", "pair0.png,   "]
(demo / "pairs.csv").write_text("\\n".join(lines) + "\\n")
print((demo / "pairs.csv").read_text())
check = subprocess.run([sys.executable, "-m", "contextclip", "data", "check", str(demo / "pairs.csv")],
                       capture_output=True, text=True)
print(check.stdout, check.stderr, f"exit code {check.returncode}", sep="\\n")
"""),
    md("""
**Next:** `02_train.ipynb` trains CLIP and ContextCLIP on the pairs of section 1.
"""),
]

# ----------------------------------------------------------------------------------------------
NB02 = [
    md(r"""
# 02 · Train CLIP and ContextCLIP

**Purpose.** Train both methods on the profile's pairs, for each of its seeds: CLIP is ContextCLIP
with $\alpha = 0$ (`cfg.for_method("clip")`), so the two runs differ only in the contextual term.
`fit` resumes an interrupted run from its checkpoint and returns a finished run's summary without
training again, so re-running this notebook is cheap.

**Inputs.** The pairs of `01_data` (built again here, cached under `data/`).
**Outputs.** `runs/<profile>/<method>-seed<k>/` (config, environment, history, checkpoint, summary);
`figures/<profile>/fig_training_curves.{png,pdf}`.
""" + "\n" + RUNTIME.format(smoke="about 1 min (2 runs)", embedded="about 6 min (6 runs)",
                            paper="about 1 h (6 runs)")),
    params("""
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
methods = None  # methods to train, from clip | contextclip (None: the profile value: both)
seeds = None  # one run per method and seed (None: the profile value)
epochs = None  # passes over the training pairs (None: the profile value; a finished run with other epochs is refused)
"""),
    code(f"""
import json

import torch

from contextclip import plots
from contextclip.data import build_pair_datasets
from contextclip.notebook_utils import knob_table
from contextclip.train import fit
{SETUP_IMPORTS}

cfg = setup_notebook(profile, methods=methods, seeds=seeds, epochs=epochs)
paths = profile_paths(cfg)
show_table(knob_table(cfg, ["image_tower", "text_tower", "embed_dim", "alpha", "bandwidth", "cx_variant",
                            "temperature", "learn_temperature", "epochs", "batch_size", "lr_image", "lr_text",
                            "lr_head", "seeds"]), caption="What is trained")
"""),
    md("""
## 1. Train (or resume, or reuse) each run

The pairs are built once and shared by every run. Progress bars show the running loss; a finished
run prints its summary at once.
"""),
    code("""
train_ds, val_ds = build_pair_datasets(cfg)
summaries = []
for method in cfg.train.methods:
    for seed in cfg.train.seeds:
        run_dir = paths.run_dir(method, seed)
        print(f"== {method}, seed {seed} -> {run_dir}")
        summaries.append(fit(cfg, method, seed, run_dir, train_ds=train_ds, val_ds=val_ds))
cols = ["method", "seed", "epochs", "final_val_loss", "seconds", "pairs_per_second", "n_train", "global_batch"]
show_table([{k: s.get(k) for k in cols} for s in summaries], caption="Training runs")
"""),
    md("""
## 2. The loss terms

`history.jsonl` of each run holds the total loss, the contrastive term and the contextual term per
logging step, and the validation loss per epoch. CLIP's contextual term is 0 (it is not computed).
"""),
    code("""
runs = {f"{m}-seed{s}": paths.run_dir(m, s) for m in cfg.train.methods for s in cfg.train.seeds}
show_figure(plots.training_curves(runs, out_dir=paths.figures))  # saved as fig_training_curves.png/.pdf
"""),
    md("""
**Next:** `03_zero_shot.ipynb` classifies unseen images with class-name prompts (Table 1).
"""),
]

# ----------------------------------------------------------------------------------------------
NB03 = [
    md(r"""
# 03 · Zero-shot classification (Table 1)

**Purpose.** Classify images the models never saw, from prompts alone: each class is the mean
text embedding of its prompt templates ("a photo of the number: "7"."), each image gets the class
whose embedding is closest. Top-1, top-5 and mean-per-class recall for every run and set, then
Table 1: CLIP and ContextCLIP (mean $\pm$ std over seeds), their paired difference with a 95 %
interval, chance level and the paper's numbers.

**Inputs.** The trained runs of `02_train`; the profile's `zero_shot_datasets`.
**Outputs.** Rows in `results/<profile>/metrics.csv`; `results/<profile>/table1_zero_shot.{md,csv}`;
embeddings cached in each run's `embeddings/`.
""" + "\n" + RUNTIME.format(smoke="about 15 s", embedded="about 1 min", paper="about 10 min")),
    params("""
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
methods = None  # methods to evaluate (None: the profile value: clip and contextclip)
seeds = None  # seeds to evaluate (None: the profile value; each must have been trained by 02_train)
zero_shot_datasets = None  # classification sets for Table 1 (None: the profile value)
eval_max_images = None  # cap per evaluation set, 0 means all (None: the profile value)
bootstrap_samples = None  # resamples for the interval when only one seed is paired (None: the profile value)
"""),
    code(f"""
import pandas as pd

from contextclip import results
from contextclip.evaluate import evaluate_runs
{SETUP_IMPORTS}

cfg = setup_notebook(profile, methods=methods, seeds=seeds, zero_shot_datasets=zero_shot_datasets,
                     eval_max_images=eval_max_images, bootstrap_samples=bootstrap_samples)
paths = profile_paths(cfg)
"""),
    md("""
## 1. Evaluate every run on every set

The images and prompts are embedded once per run and cached; re-running is fast.
"""),
    code("""
run_dirs = [paths.run_dir(method, seed) for method in cfg.train.methods for seed in cfg.train.seeds]
rows = evaluate_runs(run_dirs, "zero_shot", cfg.data.zero_shot_datasets, paths.results, cfg=cfg)
per_run = pd.DataFrame(rows)
show_table(per_run.pivot_table(index=["dataset", "metric"], columns=["method", "seed"], values="value"),
           caption="Zero-shot, per run (percent)")
"""),
    md("""
## 2. Table 1: CLIP vs ContextCLIP beside the paper

`results.build_tables` reads `metrics.csv` alone (it never re-encodes) and writes the tables.
With one seed the interval is a paired bootstrap over test images; with several, a t-interval over
the seeds' paired differences.
"""),
    code("""
tables = results.build_tables(paths.results, cfg.profile, bootstrap_samples=cfg.eval.bootstrap_samples)
show_table(paths.results / "table1_zero_shot.md")
show_markdown(results.verdict(tables["table1_zero_shot"]))
"""),
    md("""
**Next:** `04_fine_tune.ipynb` (Table 2).
"""),
]

# ----------------------------------------------------------------------------------------------
NB04 = [
    md(r"""
# 04 · Fine-tuning and the linear probe (Table 2)

**Purpose.** How good are the learned image features once labels are allowed? Two ways:
end-to-end **fine-tuning** of the image tower with a linear head initialised from the zero-shot class
embeddings (Table 2 of the paper), and a **linear probe**, a logistic regression on frozen features.
Splits: the official test split where one exists, otherwise 70/20/10, stratified and seeded.

**Inputs.** The trained runs of `02_train`; the profile's `fine_tune_datasets`.
**Outputs.** Rows in `results/<profile>/metrics.csv`; `results/<profile>/table2_fine_tune.{md,csv}`.
""" + "\n" + RUNTIME.format(smoke="15-30 s", embedded="about 2 min", paper="about 1 h")),
    params("""
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
methods = None  # methods to evaluate (None: the profile value: clip and contextclip)
seeds = None  # seeds to evaluate (None: the profile value; each must have been trained by 02_train)
fine_tune_datasets = None  # classification sets for Table 2 (None: the profile value)
ft_epochs = None  # maximum fine-tuning epochs, with early stopping (None: the profile value)
eval_max_images = None  # cap per evaluation set, 0 means all (None: the profile value)
bootstrap_samples = None  # resamples for the interval when only one seed is paired (None: the profile value)
"""),
    code(f"""
import pandas as pd

from contextclip import results
from contextclip.evaluate import evaluate_runs
{SETUP_IMPORTS}

cfg = setup_notebook(profile, methods=methods, seeds=seeds, fine_tune_datasets=fine_tune_datasets,
                     ft_epochs=ft_epochs, eval_max_images=eval_max_images, bootstrap_samples=bootstrap_samples)
paths = profile_paths(cfg)
"""),
    md("""
## 1. Fine-tune and probe every run on every set
"""),
    code("""
run_dirs = [paths.run_dir(method, seed) for method in cfg.train.methods for seed in cfg.train.seeds]
rows = evaluate_runs(run_dirs, "fine_tune", cfg.data.fine_tune_datasets, paths.results, cfg=cfg)
rows += evaluate_runs(run_dirs, "linear_probe", cfg.data.fine_tune_datasets, paths.results, cfg=cfg)
per_run = pd.DataFrame(rows)
per_run = per_run[per_run["metric"].isin(["top1", "top5", "best_epoch", "C"])]
show_table(per_run.pivot_table(index=["task", "dataset", "metric"], columns=["method", "seed"], values="value"),
           caption="Fine-tuning and linear probe, per run")
"""),
    md("""
## 2. Table 2 beside the paper
"""),
    code("""
tables = results.build_tables(paths.results, cfg.profile, bootstrap_samples=cfg.eval.bootstrap_samples)
show_table(paths.results / "table2_fine_tune.md")
show_markdown(results.verdict(tables["table2_fine_tune"]))
"""),
    md("""
**Next:** `05_tsne.ipynb` looks at the embeddings themselves.
"""),
]

# ----------------------------------------------------------------------------------------------
NB05 = [
    md(r"""
# 05 · t-SNE of the embeddings (Figures 6 and 7)

**Purpose.** The paper's claim that embeddings learned with the contextual loss are "more
structured": image embeddings (Fig. 6) and text embeddings of class prompts (Fig. 7) of one
classification set, projected to 2-D with t-SNE, CLIP beside ContextCLIP, one colour per class,
the same t-SNE settings and seed for both. Judge by eye, and remember that t-SNE pictures are not
measurements: Tables 1-2 are.

**Inputs.** The trained runs of `02_train` (first seed); the profile's `tsne_dataset`.
**Outputs.** `figures/<profile>/fig6_tsne_image_<dataset>.png`, `fig7_tsne_text_<dataset>.png`.
""" + "\n" + RUNTIME.format(smoke="25 s to 1.5 min", embedded="about 1 min", paper="about 2 min")),
    params("""
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
seeds = None  # the runs of the first seed are drawn (None: the profile value)
tsne_dataset = None  # classification set whose embeddings are drawn (None: the profile value)
tsne_perplexity = None  # t-SNE perplexity (None: the profile value)
tsne_max_points = None  # points per plot, a stratified subset (None: the profile value)
"""),
    code(f"""
from contextclip import plots
from contextclip.evaluate import embed_dataset
{SETUP_IMPORTS}

cfg = setup_notebook(profile, seeds=seeds, tsne_dataset=tsne_dataset, tsne_perplexity=tsne_perplexity,
                     tsne_max_points=tsne_max_points)
paths = profile_paths(cfg)
seed = cfg.train.seeds[0]
run_dirs = {{m: paths.run_dir(m, seed) for m in ("clip", "contextclip")}}
"""),
    md("""
## 1. Embeddings (cached by `03_zero_shot` when the set was evaluated there)
"""),
    code("""
caches = {m: embed_dataset(d, cfg.data.tsne_dataset, cfg) for m, d in run_dirs.items()}
show_table([{"method": m, "images": len(c["labels"]), "classes": len(c["classnames"]),
             "text points": len(c["tsne_text_labels"])} for m, c in caches.items()],
           caption=f"{cfg.data.tsne_dataset}: what is projected")
"""),
    md("""
## 2. Figure 6: image embeddings
"""),
    code("""
fig = plots.tsne_from_runs(run_dirs, cfg.data.tsne_dataset, kind="image", out_dir=paths.figures,
                           perplexity=cfg.eval.tsne_perplexity, seed=seed, max_points=cfg.eval.tsne_max_points)
show_figure(fig)  # saved as fig6_tsne_image_<dataset>.png/.pdf
"""),
    md("""
## 3. Figure 7: text embeddings of the class prompts
"""),
    code("""
fig = plots.tsne_from_runs(run_dirs, cfg.data.tsne_dataset, kind="text", out_dir=paths.figures,
                           perplexity=cfg.eval.tsne_perplexity, seed=seed, max_points=cfg.eval.tsne_max_points)
show_figure(fig)  # saved as fig7_tsne_text_<dataset>.png/.pdf
"""),
    md("""
**Next:** `06_retrieval.ipynb`.
"""),
]

# ----------------------------------------------------------------------------------------------
NB06 = [
    md(r"""
# 06 · Text-to-image retrieval (Figures 1 and 5, and Recall@K)

**Purpose.** Given a caption, which images does each model rank first? The paper shows grids
(Fig. 1 and 5); we draw the same grids, CLIP beside ContextCLIP for the same queries, and measure
retrieval with Recall@K in both directions (an image counts as found when any of its captions is
in the top K, as in CLIP_benchmark).

**Inputs.** The trained runs of `02_train`; the profile's `retrieval_dataset` (held-out captioned
scenes for smoke/embedded, the Flickr8k Karpathy 1K test split for paper).
**Outputs.** Rows in `results/<profile>/metrics.csv`, `results/<profile>/table3_retrieval.{md,csv}`,
`figures/<profile>/fig5_retrieval_<dataset>.png`.
""" + "\n" + RUNTIME.format(smoke="about 15 s", embedded="about 30 s", paper="about 5 min")),
    params("""
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
methods = None  # methods to evaluate (None: the profile value: clip and contextclip)
seeds = None  # seeds to evaluate; the grid uses the first (None: the profile value)
retrieval_dataset = None  # caption set for recall@K and the grids (None: the profile value)
retrieval_ks = None  # the K of Recall@K (None: the profile value, [1, 5, 10])
grid_queries = None  # query captions in the grid (None: the profile value)
grid_k = None  # images shown per query (None: the profile value)
"""),
    code(f"""
import pandas as pd

from contextclip import plots, results
from contextclip.data.registry import get_dataset
from contextclip.evaluate import embed_dataset, evaluate_runs
{SETUP_IMPORTS}

cfg = setup_notebook(profile, methods=methods, seeds=seeds, retrieval_dataset=retrieval_dataset,
                     retrieval_ks=retrieval_ks, grid_queries=grid_queries, grid_k=grid_k)
paths = profile_paths(cfg)
name = cfg.data.retrieval_dataset
"""),
    md("""
## 1. Recall@K for every run
"""),
    code("""
run_dirs = [paths.run_dir(method, seed) for method in cfg.train.methods for seed in cfg.train.seeds]
rows = evaluate_runs(run_dirs, "retrieval", [name], paths.results, cfg=cfg)
per_run = pd.DataFrame(rows)
per_run = per_run[~per_run["metric"].str.startswith("chance")]
show_table(per_run.pivot_table(index="metric", columns=["method", "seed"], values="value"),
           caption=f"Recall@K on {name} (percent)")
tables = results.build_tables(paths.results, cfg.profile, bootstrap_samples=cfg.eval.bootstrap_samples)
show_table(paths.results / "table3_retrieval.md")
"""),
    md("""
## 2. The retrieval grid (Fig. 1/5)

Each row is a query caption; the images are each model's top-K, best first, framed green when the
image is the one the caption was written for.
"""),
    code("""
seed = cfg.train.seeds[0]
run_dirs = {m: paths.run_dir(m, seed) for m in ("clip", "contextclip")}
for run_dir in run_dirs.values():
    embed_dataset(run_dir, name, cfg)  # cached by section 1; recomputed only if missing
fig = plots.retrieval_grid_from_runs(run_dirs, name, get_dataset(name, cfg).images, n_queries=cfg.eval.grid_queries,
                                     k=cfg.eval.grid_k, out_dir=paths.figures, seed=seed, name=f"fig5_retrieval_{name}")
show_figure(fig)  # saved as fig5_retrieval_<dataset>.png/.pdf
"""),
    md("""
**Next:** `07_report.ipynb` puts everything together.
"""),
]

# ----------------------------------------------------------------------------------------------
NB07 = [
    md(r"""
# 07 · Report: our numbers beside the paper's, and what they say

**Purpose.** One page with the answer: Table 1 (zero-shot) and Table 2 (fine-tuning, linear probe)
beside the paper's numbers and chance, retrieval Recall@K, the figures, the decisions we took
where the paper is silent, the environment and the time it took, and a plain-language verdict
computed from the numbers: which ContextCLIP - CLIP differences lie outside their 95 % interval.

**Inputs.** `results/<profile>/metrics.csv` (from 03, 04, 06), `figures/<profile>/`, the run folders.
**Outputs.** The tables rewritten (`results/<profile>/table*.{md,csv}`) and
`results/<profile>/report.md` (the verdict and the environment).
""" + "\n" + RUNTIME.format(smoke="about 5 s", embedded="about 15 s", paper="about 30 s")),
    params("""
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
bootstrap_samples = None  # resamples for single-seed intervals (None: the profile value)
"""),
    code(f"""
import json
from pathlib import Path

import pandas as pd
from IPython.display import Image, display

from contextclip import results
from contextclip.config import REPO_ROOT
from contextclip.notebook_utils import environment_summary, pipeline_timings
{SETUP_IMPORTS}

cfg = setup_notebook(profile, bootstrap_samples=bootstrap_samples)
paths = profile_paths(cfg)
tables = results.build_tables(paths.results, cfg.profile, bootstrap_samples=cfg.eval.bootstrap_samples)
"""),
    md("""
## 1. Table 1: zero-shot classification
"""),
    code("""
show_table(paths.results / "table1_zero_shot.md")
"""),
    md("""
## 2. Table 2: fine-tuning and linear probe
"""),
    code("""
show_table(paths.results / "table2_fine_tune.md")
"""),
    md("""
## 3. Retrieval
"""),
    code("""
show_table(paths.results / "table3_retrieval.md")
"""),
    md("""
## 4. Verdict

Computed from the tables by `results.verdict`: for each dataset and metric, whether 0 (no
difference) lies inside the 95 % interval of ContextCLIP - CLIP, and whether the paper's reported
difference does.
"""),
    code("""
verdict = "\\n\\n".join(f"**{title}**\\n\\n" + results.verdict(tables[key]) for key, title in [
    ("table1_zero_shot", "Zero-shot (Table 1)"), ("table2_fine_tune", "Fine-tuning and linear probe (Table 2)"),
    ("table3_retrieval", "Retrieval")])
t1 = tables["table1_zero_shot"]
t1 = t1[(t1["status"] == "ok") & (t1["metric"] == "top1")]
outside = t1[(t1["ci_low"] > 0) | (t1["ci_high"] < 0)]
better, worse = int((outside["diff"] > 0).sum()), int((outside["diff"] < 0).sum())
summary = (f"On zero-shot top-1, ContextCLIP is better than CLIP on {better} and worse on {worse} of "
           f"{len(t1)} sets with 95 % confidence; on the other {len(t1) - better - worse} the difference "
           "is not distinguishable from noise.")
show_markdown(summary + "\\n\\n" + verdict)
"""),
    md("""
## 5. Figures
"""),
    code("""
pngs = sorted(paths.figures.glob("fig*.png"))
for png in pngs:
    show_markdown(f"`{png.relative_to(REPO_ROOT)}`")
    display(Image(filename=str(png), width=800))
print(f"{len(pngs)} figures in {paths.figures.relative_to(REPO_ROOT)}")
"""),
    md("""
## 6. Decisions

Where the paper is silent or ambiguous we chose, wrote down why and how to switch: see
[`docs/decisions.md`](../docs/decisions.md). Its headings:
"""),
    code("""
decisions = REPO_ROOT / "docs" / "decisions.md"
heads = [line.lstrip("#").strip() for line in decisions.read_text(encoding="utf-8").splitlines()
         if line.startswith("## ")]
show_markdown("\\n".join(f"- {h}" for h in heads))
"""),
    md("""
## 7. Environment and time taken
"""),
    code("""
env = environment_summary()
show_table(pd.DataFrame({"value": {k: str(v) for k, v in env.items()}}), caption="Environment")
runs = []
for summary_path in sorted(paths.runs.glob("*-seed*/summary.json")):
    s = json.loads(summary_path.read_text())
    runs.append({"run": summary_path.parent.name, "train seconds": s.get("seconds"),
                 "pairs/s": s.get("pairs_per_second"), "final val loss": s.get("final_val_loss")})
show_table(runs, caption="Training time per run")
timings = pipeline_timings(cfg)
if len(timings):
    show_table(timings, caption="Notebooks of the last `reproduce` run (seconds; this one still running)")
"""),
    code("""
report = paths.results / "report.md"
report.write_text(f"# Report ({cfg.profile} profile)\\n\\n{summary}\\n\\n{verdict}\\n\\n## Environment\\n\\n"
                  + "\\n".join(f"- {k}: {v}" for k, v in env.items()) + "\\n", encoding="utf-8")
print(f"wrote {report.relative_to(REPO_ROOT)}")
"""),
]

NOTEBOOKS: dict[str, list] = {
    "00_contextual_loss_explained": NB00,
    "01_data": NB01,
    "02_train": NB02,
    "03_zero_shot": NB03,
    "04_fine_tune": NB04,
    "05_tsne": NB05,
    "06_retrieval": NB06,
    "07_report": NB07,
}


def build(name: str, cells: list) -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = cells
    for i, c in enumerate(nb.cells):
        c["id"] = f"{name[:2]}-{i:02d}"  # stable ids: rebuilding gives the same file
    path = NB_DIR / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def strip(path: Path) -> None:
    """Remove outputs, execution counts and papermill/kernel metadata from a notebook in place."""
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
            c.execution_count = None
        for key in ("execution", "papermill", "collapsed", "scrolled"):
            c.metadata.pop(key, None)
    for key in ("papermill", "widgets"):
        nb.metadata.pop(key, None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nbformat.write(nb, path)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--strip"]:
        for p in argv[1:]:
            strip(Path(p))
            print(f"stripped {p}")
        return 0
    names = argv or list(NOTEBOOKS)
    for name in names:
        if name not in NOTEBOOKS:
            print(f"unknown notebook {name!r}; known: {list(NOTEBOOKS)}", file=sys.stderr)
            return 2
        print(f"wrote {build(name, NOTEBOOKS[name])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
