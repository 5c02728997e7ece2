"""Configuration: dataclasses for data, model, loss, training and evaluation, and YAML profiles.

One name per knob everywhere: a notebook parameter, a YAML key, a dataclass field and a saved
config key are the same flat name (``batch_size``, ``alpha``, ...). Names are unique across
sections, so ``--set batch_size=64`` and ``--set train.batch_size=64`` mean the same thing.

Profiles live in ``configs/<name>.yaml`` as sections ``data``, ``model``, ``loss``, ``train``,
``eval``. Unknown keys, wrong types and out-of-range values are errors that name the key, the
value and what is valid. YAML is read with ``yaml.safe_load`` only.

This module does not build models or datasets; it only describes and checks them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from contextclip import fileio
from contextclip.errors import ConfigError, storage_error

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
METHODS = ("clip", "contextclip")
#: How tables and figures name the methods; ``METHOD_DESCRIPTIONS`` is added in figure legends.
METHOD_LABELS = {"clip": "CLIP", "contextclip": "ContextCLIP"}
METHOD_DESCRIPTIONS = {"clip": "contrastive only", "contextclip": "+ contextual loss"}
#: The evaluation tasks (``python -m contextclip evaluate --task``).
TASKS = ("zero_shot", "fine_tune", "linear_probe", "retrieval")


SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit
MAX_BASE_DEPTH = 8  # profiles overlaying profiles (``base:``), at most this deep
MAX_YAML_NODES = 100_000  # a YAML document whose aliases expand to more nodes is refused (alias bombs)
MAX_LIST_ITEMS = 1_000  # items in one list knob
MAX_LR = 10.0  # a larger learning rate overflows Adam's update in fp32 (a crash, not a NaN stop)


def check_seed(seed: Any, key: str = "seed") -> int:
    """``seed`` if it is an integer in [0, 2**32 - 1] (what numpy accepts), else a ConfigError."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"{key} {seed!r} is not a valid seed; use an integer from 0 to {SEED_MAX}")
    return int(seed)


@dataclass
class DataConfig:
    train_data: str = "synthetic"  # caption set to pretrain on: synthetic | manifest | cc3m | flickr8k
    n_pairs: int = 400  # pairs in the pretraining set (synthetic corpus size, or CC3M subset size)
    digit_fraction: float = 0.72  # synthetic corpus: share of one-digit scenes (then 5% letters, 13% shapes, pairs)
    image_size: int = 32  # square side in pixels that every image is resized to
    val_fraction: float = 0.1  # share of pairs held out for the validation loss
    manifest: str = ""  # path to an image,caption CSV when train_data is "manifest"
    data_root: str = "data"  # where datasets are cached or expected on disk
    skip_bad: bool = False  # skip (and count) bad manifest rows instead of stopping
    augment: bool = True  # random augmentation of training images
    missing_datasets: str = "error"  # error | skip: what to do when an evaluation set is absent
    zero_shot_datasets: list = field(default_factory=lambda: ["mnist_real", "digits", "shapes10"])
    fine_tune_datasets: list = field(default_factory=lambda: ["digits"])
    retrieval_dataset: str = "synthetic_captions"  # caption set for recall@K and the grids
    tsne_dataset: str = "mnist_real"  # classification set whose embeddings are drawn (Fig. 6/7)
    eval_max_images: int = 0  # cap per evaluation set (0 = all)


@dataclass
class ModelConfig:
    image_tower: str = "tiny_cnn"  # tiny_cnn | resnet10 | resnet18 | resnet50 | efficientnet_lite0
    image_weights: str = "none"  # none | imagenet | package | path/to/weights.pt
    text_tower: str = "tiny_bert"  # tiny_bert | bert_base_random | minilm | a Hugging Face name or local folder
    pooling: str = "mean"  # cls | mean
    head: str = "linear"  # linear (paper) | mlp (residual MLP of the code the paper used)
    embed_dim: int = 256  # joint embedding size
    max_length: int = 32  # token limit per caption (captions are padded per batch)
    small_image_stem: bool = False  # ResNet: 3x3 stride-1 conv1 and no max-pool (CIFAR style; ~7x compute at 32 px)
    image_width: int = 64  # resnet10 only: channels of its first stage (64 = ResNet-18's; stages double it)
    freeze_image: bool = False  # keep the image tower frozen (eval mode, no gradients)
    freeze_text: bool = False  # keep the text tower frozen (eval mode, no gradients)


@dataclass
class LossConfig:
    alpha: float = 0.5  # weight of the contextual loss (ContextCLIP); the clip method uses 0
    bandwidth: float = 0.5  # h of Eq. 7
    cx_eps: float = 1e-5  # eps of Eq. 6
    cx_variant: str = "batch"  # batch | per_sample_features | feature_columns
    temperature: float = 1.0  # initial tau of Eq. 2 (logits = I @ T.T / tau)
    learn_temperature: bool = True  # learn log(1/tau), clamped to max_logit_scale
    max_logit_scale: float = 100.0  # clamp of 1/tau, as in CLIP
    image_to_text_weight: float = 0.75  # lambda of Eq. 4


@dataclass
class TrainConfig:
    epochs: int = 2  # passes over the training pairs
    batch_size: int = 32  # pairs per step (global batch under torchrun)
    lr_image: float = 1e-3  # learning rate of the image tower
    lr_text: float = 1e-3  # learning rate of the text tower
    lr_head: float = 1e-3  # learning rate of the projection heads and temperature
    weight_decay: float = 1e-3  # Adam(W) weight decay
    optimizer: str = "adam"  # adam (paper) | adamw
    scheduler: str = "none"  # none | cosine
    grad_clip: float = 0.0  # max gradient norm (0 = off)
    ema_decay: float = 0.0  # evaluate an exponential moving average of the weights with this decay per step (0 = off)
    num_workers: int = 0  # DataLoader workers
    train_workers: int = 1  # processes that train a profile's runs side by side (notebook 02); 1 = in turn
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    log_every: int = 10  # steps between progress/loss updates
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints (0 = end of epoch only)
    cache_frozen_features: bool = True  # compute a frozen tower's features once (text; images only without augmentation)
    seeds: list = field(default_factory=lambda: [0])  # seeds trained per method by the pipeline
    methods: list = field(default_factory=lambda: ["clip", "contextclip"])  # methods compared


@dataclass
class EvalConfig:
    eval_batch_size: int = 256  # images per forward pass in evaluation
    ft_epochs: int = 3  # max fine-tuning epochs (Table 2)
    ft_lr: float = 1e-4  # fine-tuning learning rate
    ft_patience: int = 2  # early-stopping patience in epochs
    ft_init: str = "zeroshot"  # zeroshot | random: initialisation of the fine-tuning head
    tsne_perplexity: float = 30.0  # t-SNE perplexity (Fig. 6/7)
    tsne_max_points: int = 1000  # points per t-SNE plot
    retrieval_ks: list = field(default_factory=lambda: [1, 5, 10])  # K of recall@K
    grid_queries: int = 4  # query captions per retrieval grid (Fig. 1/5)
    grid_k: int = 5  # images per query in the grids
    bootstrap_samples: int = 1000  # resamples for single-seed intervals
    primary_endpoints: list = field(default_factory=list)  # "task/dataset/metric" rows the headline comes from
    replication_seeds: list = field(default_factory=list)  # seeds of train.seeds forming block B (the replication)
    verdicts: bool = True  # False: tables carry no verdict column, a banner says the numbers measure nothing


@dataclass
class SensitivityConfig:
    """The sensitivity study of notebook 08: alpha x variant at the profile's h, then h at its alpha."""

    sens_alphas: list = field(default_factory=lambda: [0.0, 0.5])  # alpha values swept (0 = CLIP, trained once)
    sens_variants: list = field(default_factory=lambda: ["batch"])  # cx_variant values swept at every alpha
    sens_bandwidths: list = field(default_factory=lambda: [0.5])  # h values swept at the profile's alpha, per variant
    sens_datasets: list = field(default_factory=list)  # zero-shot sets the study reports ([]: the primary endpoints' sets, else the first of zero_shot_datasets)


@dataclass
class PipelineConfig:
    notebooks: list = field(default_factory=list)  # numbered notebooks `reproduce` runs, as "NN" (empty: all)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "sensitivity": SensitivityConfig,
    "pipeline": PipelineConfig,
}

#: sections that never change a training run's result (not compared when a run folder is resumed)
RESULT_NEUTRAL_SECTIONS = ("eval", "sensitivity", "pipeline")

#: The one list of valid values of each knob with a fixed set of choices. The registries that
#: implement them (``model.IMAGE_TOWERS``, ``model.HEADS``, ``model.POOLINGS``, ``losses.CX_VARIANTS``,
#: ``train.OPTIMIZERS``, ``train.SCHEDULERS``, ``data.pairs.SOURCES``, ...) are tied to it by
#: tests/test_config.py::test_every_registry_has_exactly_the_choices_of_its_knob; messages use ``check_choice``.
CHOICES: dict[str, tuple] = {
    "train_data": ("synthetic", "manifest", "cc3m", "flickr8k"),
    "missing_datasets": ("error", "skip"),
    "image_tower": ("tiny_cnn", "resnet10", "resnet18", "resnet50", "efficientnet_lite0"),
    "pooling": ("cls", "mean"),
    "head": ("linear", "mlp"),
    "cx_variant": ("batch", "per_sample_features", "feature_columns"),
    "optimizer": ("adam", "adamw"),
    "scheduler": ("none", "cosine"),
    "device": ("auto", "cpu", "cuda"),
    "precision": ("auto", "fp32", "bf16"),
    "ft_init": ("zeroshot", "random"),
}


def check_choice(key: str, value: Any) -> Any:
    """``value`` if it is one of ``CHOICES[key]``, else a ``ConfigError`` naming the key and the choices."""
    if value not in CHOICES[key]:
        raise ConfigError(f"config key '{key}': {value!r} is not one of {list(CHOICES[key])}")
    return value


# (low, high, low_inclusive): the valid range of each numeric knob.
RANGES: dict[str, tuple] = {
    "n_pairs": (2, None, True),
    "digit_fraction": (0.0, 1.0, True),
    "image_size": (8, 1024, True),
    "val_fraction": (0.0, 0.9, True),
    "eval_max_images": (0, None, True),
    "embed_dim": (2, 8192, True),
    "max_length": (4, 4096, True),
    "alpha": (0.0, None, True),
    "bandwidth": (0.0, None, False),
    "cx_eps": (0.0, None, False),
    "temperature": (0.0, None, False),
    "max_logit_scale": (1.0, None, True),
    "image_to_text_weight": (0.0, 1.0, True),
    "epochs": (1, None, True),
    "batch_size": (2, None, True),
    "lr_image": (0.0, MAX_LR, True),
    "lr_text": (0.0, MAX_LR, True),
    "lr_head": (0.0, MAX_LR, True),
    "weight_decay": (0.0, None, True),
    "grad_clip": (0.0, None, True),
    "ema_decay": (0.0, 0.9999, True),
    "num_workers": (0, 64, True),
    "train_workers": (1, 64, True),
    "log_every": (1, None, True),
    "checkpoint_every": (0, None, True),
    "eval_batch_size": (1, None, True),
    "ft_epochs": (0, None, True),
    "ft_lr": (0.0, MAX_LR, True),
    "ft_patience": (1, None, True),
    "tsne_perplexity": (1.0, None, True),
    "tsne_max_points": (10, None, True),
    "grid_queries": (1, 64, True),
    "grid_k": (1, 64, True),
    "bootstrap_samples": (10, None, True),
}



def _did_you_mean(name: str, valid) -> str:
    """``" (did you mean 'bandwidth'?)"`` for a near miss of a valid key, else ``""``."""
    import difflib

    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""

def _field_types(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


#: flat knob name -> section name
KNOB_SECTION: dict[str, str] = {
    name: section for section, cls in SECTIONS.items() for name in _field_types(cls)
}


def knob_default(key: str) -> Any:
    """The default value of a knob (what a run made before the knob existed behaved as)."""
    cls = SECTIONS[KNOB_SECTION[key]]
    f = {f.name: f for f in dataclasses.fields(cls)}[key]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _check_value(key: str, value: Any, expected: type) -> Any:
    """Return ``value`` coerced to ``expected`` or raise a ConfigError naming the key."""
    tname = getattr(expected, "__name__", str(expected))
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    elif expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"config key '{key}': {value!r} is not a finite number; give a finite value")
    elif expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    elif expected is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        value = list(value)
        if len(value) > MAX_LIST_ITEMS:
            raise ConfigError(f"config key '{key}': {len(value)} items; at most {MAX_LIST_ITEMS} are allowed")
        if key in ("seeds", "replication_seeds"):
            for s in value:
                check_seed(s, f"config key '{key}': item")
        elif key == "primary_endpoints":
            if not all(isinstance(v, str) and v.count("/") == 2 and all(v.split("/")) for v in value):
                raise ConfigError(f"config key 'primary_endpoints': {value!r}; give 'task/dataset/metric' strings, "
                                  "for example [\"zero_shot/novel_classes/top1\"]")
        elif key in ("methods", "zero_shot_datasets", "fine_tune_datasets", "sens_datasets"):
            if not all(isinstance(v, str) for v in value):
                raise ConfigError(f"config key '{key}': expected a list of names, got {value!r}")
        if key == "methods" and not set(value) <= set(METHODS):
            raise ConfigError(f"config key 'methods': {value!r}; valid methods are {list(METHODS)}")
        if key == "retrieval_ks" and not all(isinstance(k, int) and k >= 1 for k in value):
            raise ConfigError(f"config key 'retrieval_ks': expected positive integers, got {value!r}")
        if key in ("sens_alphas", "sens_bandwidths"):
            low = "> 0" if key == "sens_bandwidths" else ">= 0"
            ok = [isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and v != float("inf")
                  and (v > 0 if key == "sens_bandwidths" else v >= 0) for v in value]
            if not value or not all(ok):
                raise ConfigError(f"config key '{key}': expected a non-empty list of finite numbers {low}, "
                                  f"got {value!r}")
            value = [float(v) for v in value]
        if key == "sens_variants" and (not value or not set(value) <= set(CHOICES["cx_variant"])):
            raise ConfigError(f"config key 'sens_variants': {value!r}; give one or more of "
                              f"{list(CHOICES['cx_variant'])}")
        if key == "notebooks" and not all(isinstance(v, str) and len(v) == 2 and v.isdigit() for v in value):
            raise ConfigError(f"config key 'notebooks': {value!r}; give two-digit notebook numbers as strings, "
                              "for example [\"00\", \"08\"] (an empty list runs them all)")
    else:  # pragma: no cover - only the types above are used
        raise ConfigError(f"config key '{key}': unsupported type {tname}")
    if key in CHOICES:
        check_choice(key, value)
    if key in RANGES:
        lo, hi, lo_incl = RANGES[key]
        bad_lo = lo is not None and (value < lo if lo_incl else value <= lo)
        bad_hi = hi is not None and value > hi
        if value != value or bad_lo or bad_hi:  # value != value catches NaN
            lo_s = "" if lo is None else (f">= {lo}" if lo_incl else f"> {lo}")
            hi_s = "" if hi is None else f"<= {hi}"
            rng = " and ".join(s for s in (lo_s, hi_s) if s)
            raise ConfigError(f"config key '{key}': {value!r} is out of range; it must be {rng}")
    return value


@dataclass
class Config:
    """The whole resolved configuration of one run or one pipeline profile."""

    profile: str = "smoke"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sensitivity: SensitivityConfig = field(default_factory=SensitivityConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    # ----------------------------------------------------------------- views
    def to_dict(self) -> dict[str, Any]:
        """Sectioned plain dict (what is saved as ``config.json``)."""
        return {"profile": self.profile, **{s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}}

    def to_flat(self) -> dict[str, Any]:
        """Flat ``knob -> value`` dict (what notebooks and ``--set`` use)."""
        flat: dict[str, Any] = {}
        for s in SECTIONS:
            flat.update(dataclasses.asdict(getattr(self, s)))
        return flat

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def get(self, key: str) -> Any:
        return getattr(getattr(self, KNOB_SECTION[key]), key)

    # ----------------------------------------------------------- constructors
    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> Config:
        """Build from a sectioned or flat dict; every key is checked."""
        cfg = cls()
        return cfg.updated(d, source=source)

    def updated(self, d: dict[str, Any], *, source: str = "override") -> Config:
        """A copy with the keys of ``d`` (sectioned or flat) applied and checked; a renamed key
        (``RENAMED_KEYS``, e.g. in the config saved with an older run) is read under its new name."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(d).__name__}")
        new = Config.from_sections(self.to_dict())
        d = _renamed(d)
        for key, value in d.items():
            if key == "profile":
                if not isinstance(value, str):
                    raise ConfigError(f"{source}: key 'profile' must be a string, got {value!r}")
                new.profile = value
            elif key in SECTIONS:
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: section '{key}' must be a mapping, got {value!r}")
                for sub, v in value.items():
                    if KNOB_SECTION.get(sub) != key:
                        valid = sorted(_field_types(SECTIONS[key]))
                        raise ConfigError(
                            f"{source}: unknown key '{key}.{sub}'{_did_you_mean(sub, valid)}. Valid keys in '{key}': {valid}"
                        )
                    new._set(sub, v)
            else:
                name = key.split(".", 1)[1] if "." in key else key
                sec = key.split(".", 1)[0] if "." in key else None
                if name not in KNOB_SECTION or (sec is not None and KNOB_SECTION[name] != sec):
                    raise ConfigError(
                        f"{source}: unknown key '{key}'{_did_you_mean(name, KNOB_SECTION)}. Valid keys: {sorted(KNOB_SECTION)}"
                    )
                new._set(name, value)
        new.validate()
        return new

    @classmethod
    def from_sections(cls, d: dict[str, Any]) -> Config:
        cfg = cls(profile=d.get("profile", "smoke"))
        for s, sc in SECTIONS.items():
            setattr(cfg, s, sc(**{k: v for k, v in d.get(s, {}).items()}))
        return cfg

    def _set(self, key: str, value: Any) -> None:
        section = KNOB_SECTION[key]
        expected = _field_types(SECTIONS[section])[key]
        setattr(getattr(self, section), key, _check_value(key, value, expected))

    def validate(self) -> None:
        """Cross-field checks (single values are checked when set)."""
        for key in KNOB_SECTION:
            expected = _field_types(SECTIONS[KNOB_SECTION[key]])[key]
            _check_value(key, self.get(key), expected)
        if self.data.train_data == "manifest" and not self.data.manifest:
            raise ConfigError(
                "config key 'manifest': train_data is 'manifest' but no manifest path is set; "
                "set manifest=path/to/pairs.csv"
            )
        if not self.train.seeds:
            raise ConfigError("config key 'seeds': at least one seed is needed")
        block_b = set(self.eval.replication_seeds)
        if block_b and (not block_b <= set(self.train.seeds) or len(set(self.train.seeds) - block_b) < 2):
            raise ConfigError(f"config key 'replication_seeds': {sorted(block_b)} must be some of the trained seeds "
                              f"{list(self.train.seeds)} and leave at least 2 seeds for the first block")
        if self.model.image_width != 64 and self.model.image_tower != "resnet10":
            raise ConfigError(f"config key 'image_width': only image_tower=resnet10 takes a width, not "
                              f"{self.model.image_tower!r}; leave image_width at 64")

    # ------------------------------------------------------- per-method view
    def for_method(self, method: str) -> Config:
        """The config a run of ``method`` trains with: CLIP is ContextCLIP with alpha = 0."""
        if method not in METHODS:
            raise ConfigError(f"method {method!r} is not one of {list(METHODS)}")
        if method == "clip":
            return self.updated({"alpha": 0.0})
        return self


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads exponent numbers without a dot (``1e-4``) as floats.

    YAML 1.1 (PyYAML) needs a dot (``1.0e-4``); YAML 1.2 and every user expect ``1e-4`` to be a number.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"""),
    list("-+0123456789"),
)


#: a key's former name -> (its name now, the former value converted); older run folders keep working
RENAMED_KEYS: dict[str, tuple[str, Any]] = {
    "sens_dataset": ("sens_datasets", lambda v: [v] if isinstance(v, str) and v else ([] if v in ("", None) else v)),
}


def _renamed(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with every former key name (flat, dotted or inside its section) under its name now."""
    def one(key: str, value: Any) -> tuple[str, Any]:
        sec, _, name = key.rpartition(".")
        if name in RENAMED_KEYS:
            new, convert = RENAMED_KEYS[name]
            return (f"{sec}.{new}" if sec else new), convert(value)
        return key, value

    out: dict[str, Any] = {}
    for key, value in d.items():
        if key in SECTIONS and isinstance(value, dict):
            value = dict(one(k, v) for k, v in value.items())
        k, v = one(key, value) if key not in SECTIONS else (key, value)
        out[k] = v
    return out


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes ``node`` expands to with every alias copied out (memoised: linear in the document)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias counts once; safe_load builds it as a self-reference
    if isinstance(node, yaml.SequenceNode):
        n = 1 + sum(_expanded_size(c, memo) for c in node.value)
    elif isinstance(node, yaml.MappingNode):
        n = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        n = 1
    memo[key] = n
    return n


def safe_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely: no Python tags, ``1e-4`` a number, alias bombs refused in milliseconds."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_YAML_NODES:
            raise ConfigError(f"{source}: its aliases (&name / *name) expand to {size:,} values, more than the "
                              f"{MAX_YAML_NODES:,} allowed; write the values out instead of nesting aliases")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid (safe) YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to read; flatten it") from None
    finally:
        loader.dispose()


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` from the command line; the value is read as YAML (safe)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, for example batch_size=64")
    key, raw = text.split("=", 1)
    value = safe_yaml(raw, f"override {text[:80]!r}") if raw.strip() else ""
    return key.strip(), value


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with safe loading only (Python object tags are refused)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8 YAML") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    d = safe_yaml(text, str(path))
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(d).__name__}")
    return d


def profile_path(profile: str | Path) -> Path:
    p = Path(profile)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        return p
    candidate = CONFIG_DIR / f"{profile}.yaml"
    if not candidate.exists():
        known = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown profile {str(profile)!r}; known profiles: {known} (in {CONFIG_DIR})")
    return candidate


def load_config(profile: str | Path = "smoke", overrides: dict[str, Any] | list[str] | None = None,
                _chain: tuple[Path, ...] = ()) -> Config:
    """Load ``configs/<profile>.yaml`` (or a YAML path) and apply overrides.

    ``overrides`` is a dict of flat or dotted keys, or a list of ``key=value`` strings.
    A YAML file may name a ``base`` profile that it overlays (no cycles, at most ``MAX_BASE_DEPTH`` deep): a
    profile name, or a YAML path, which when relative is read from the folder of the file naming it.
    """
    path = profile_path(profile)
    chain = (*_chain, path.resolve())
    if path.resolve() in _chain:
        raise ConfigError(f"{path}: 'base:' profiles form a cycle ({' -> '.join(p.name for p in chain)}); "
                          "remove one of the base keys")
    if len(chain) > MAX_BASE_DEPTH:
        raise ConfigError(f"{path}: 'base:' profiles nest more than {MAX_BASE_DEPTH} deep "
                          f"({' -> '.join(p.name for p in chain)}); flatten them")
    d = read_yaml(path)
    base = d.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{path}: key 'base' must be a profile name or a YAML path, got {base!r}")
    if base and Path(base).suffix in (".yaml", ".yml") and not Path(base).expanduser().is_absolute():
        base = str(path.parent / Path(base).expanduser())  # a relative base is beside this YAML file, not the cwd
    cfg = load_config(base, _chain=chain) if base else Config()
    name = d.pop("profile", None) or (Path(profile).stem if base is None or Path(profile).suffix else str(profile))
    cfg = cfg.updated(d, source=str(path))
    cfg.profile = name
    if overrides:
        if isinstance(overrides, (list, tuple)):
            overrides = dict(parse_override(o) for o in overrides)
        cfg = cfg.updated(dict(overrides), source="override")
    return cfg


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config as JSON, atomically."""
    try:
        fileio.atomic_write(path, cfg.to_json() + "\n")
    except OSError as exc:  # disk full, read-only folder: atomic_write has removed its temporary file
        raise storage_error(Path(path), exc) from None


def read_json(path: Path, what_to_do: str = "restore it, or delete it and run the command that writes it again"
              ) -> dict[str, Any]:
    """A JSON object from ``path``; a ConfigError naming the file when it is not one (damaged, garbage)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({str(exc)[:120]}); it is damaged: {what_to_do}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path} holds a JSON {type(d).__name__}, not an object; it is damaged: {what_to_do}")
    return d


def config_from_json(path: Path) -> Config:
    return Config.from_dict(read_json(path), source=str(path))
