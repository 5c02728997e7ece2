# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: ContextCLIP (.venv)
#     language: python
#     name: contextclip
# ---

# %% [markdown]
# # Solutions · 06 Text-to-image retrieval
#
# Worked answers to the exercises at the end of `06_retrieval.ipynb`, from the cached embeddings and
# the `metrics.csv` that 06 showed (the profile's saved results, or `runs/<profile>/by_hand/results/`;
# run 06 first). **Runtime:** a few seconds.

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read
recompute = False  # True: read your by-hand results (runs/<profile>/by_hand/), as the notebook with recompute = True

# %%
from contextclip import exercises, results
from contextclip.evaluate import load_embeddings
from contextclip.notebook_utils import notebook_outputs, setup_notebook, show_markdown, show_table
from contextclip.plots import grid_positives
from contextclip.retrieval import topk_images

cfg = setup_notebook(profile, recompute=recompute)
paths = notebook_outputs(cfg, recompute).paths
name, seed = cfg.data.retrieval_dataset, cfg.train.seeds[0]
m = results.read_metrics(paths.results / "metrics.csv")
m = m[(m["task"] == "retrieval") & (m["dataset"] == name)]

# %% [markdown]
# ## 1. Chance
#
# *What you should have seen:* a random ranking puts one of a caption's correct images first with
# probability (correct images) / n_images. A correct image is one with every attribute the caption
# states, so "the digit 3" has dozens and "a small red 3 in the top left" one or two: chance R@1 is
# the mean of (correct images) / n_images, well above 100/n_images. The `_exact` chance (own image or
# identical text only) is close to 100/n_images. R@K is about K times R@1.

# %%
cache = load_embeddings(paths.run_dir("clip", seed), name)
n_images = int(cache["image"].shape[0])
correct = grid_positives(cache).sum(dim=1).float()  # per caption: images with every stated attribute
expected = 100 * (correct / n_images).mean().item()
chance = m[m["metric"] == "chance_text_to_image_R@1"]["value"]
show_table([{"images": n_images, "100 / images": 100 / n_images, "mean correct images per caption": correct.mean().item(),
             "expected chance R@1": expected, "metrics.csv chance R@1": chance.iloc[0]}])
exercises.retrieval_chance(chance.iloc[0], expected, n_images)

# %% [markdown]
# ## 2. `grid_k = 10`
#
# *What you should have seen:* a framed image is a correct image within the top K of a query, so
# the share of queries with at least one frame is Recall@K over those queries: going from K = 5 to
# 10 adds about (R@10 - R@5) % more framed rows. Over all captions:

# %%
pos = grid_positives(cache)
rows = []
for method in ("clip", "contextclip"):
    c = load_embeddings(paths.run_dir(method, seed), name)
    for k in (5, 10):
        top = topk_images(c["text"], c["image"], k)
        found = pos.gather(1, top).any(dim=1).float().mean().item() * 100
        rows.append({"method": method, "K": k, "captions with a framed image (%)": found,
                     "text_to_image R@K (metrics.csv)": m[(m["method"] == method) & (m["seed"] == seed)
                                                          & (m["metric"] == f"text_to_image_R@{k}")]["value"].mean()})
show_table(rows)
for method in ("clip", "contextclip"):
    mine = [r for r in rows if r["method"] == method]
    exercises.framed_share({r["K"]: r["captions with a framed image (%)"] for r in mine},
                           {r["K"]: r["text_to_image R@K (metrics.csv)"] for r in mine})

# %% [markdown]
# ## 3. Two directions, two numbers
#
# *What you should have seen:* text-to-image ranks the images for each caption; image-to-text ranks
# the captions for each image and counts a hit when **any** of the image's captions is in the top K.
# The queries differ (captions vs images), the candidates differ (n images vs several captions each),
# and so do the chance levels.

# %%
both = m[m["metric"].str.contains("_R@") & ~m["metric"].str.startswith("chance")]
show_table(both.pivot_table(index="metric", columns="method", values="value"), caption=f"{name} (%)")
chances = m[m["metric"].str.startswith("chance")].groupby("metric")["value"].first()
show_markdown("Chance levels: " + ", ".join(f"{k.removeprefix('chance_')} {v:.2f} %" for k, v in chances.items()))
queries = {d: int(m[m["metric"] == f"{d}_R@1"]["n"].iloc[0]) for d in ("text_to_image", "image_to_text")}
show_markdown(f"Queries: {queries['text_to_image']} captions (text to image), {queries['image_to_text']} images "
              "(image to text).")
exercises.two_directions(queries)
