"""Model towers, heads, normalisation, freeze semantics and weight loading (CPU, offline)."""

from __future__ import annotations

import math
import urllib.error

import pytest
import torch

from contextclip.config import load_config
from contextclip.model import (
    WeightsUnavailable,
    build_model,
    efficientnet_lite0_file,
    pool_tokens,
)

CAPTIONS = ["a red square", "two blue circles to the left of a large green digit seven", "a cat"]


def _model(**over):
    torch.manual_seed(0)
    return build_model(load_config("smoke", over))


def _images(n=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("head,pooling", [("linear", "mean"), ("mlp", "cls")])
def test_shapes_and_l2_normalisation(head, pooling):
    m = _model(head=head, pooling=pooling, embed_dim=64).eval()
    tok = m.tokenize(CAPTIONS)
    assert tok["input_ids"].shape == tok["attention_mask"].shape
    # padded per batch, not to max_length: the longest caption decides the width
    assert tok["input_ids"].shape[1] == int(tok["attention_mask"].sum(1).max())
    assert tok["attention_mask"][0].sum() < tok["attention_mask"][1].sum()
    img_emb, txt_emb, scale = m(_images(), **tok)
    assert img_emb.shape == (3, 64) and txt_emb.shape == (3, 64)
    torch.testing.assert_close(img_emb.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(txt_emb.norm(dim=-1), torch.ones(3))
    assert m.image_features(_images()).shape == (3, m.image_dim)
    assert m.text_features(**tok).shape == (3, m.text_dim)
    assert math.isclose(float(scale.detach()), 1 / 0.07, rel_tol=1e-5)  # smoke profile: tau = 0.07


def test_padding_per_batch_and_truncation():
    m = _model(max_length=8)
    short = m.tokenize(["a cat", "a dog"])
    long = m.tokenize(CAPTIONS)
    assert short["input_ids"].shape[1] < long["input_ids"].shape[1] == 8  # truncated at max_length


def test_image_conversion_normalises_and_resizes():
    m = _model().eval()
    imgs = _images(2, 32)
    x = m.preprocess(imgs)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (imgs.float() / 255 - mean) / std)
    # a different input size is resized to image_size inside the model
    big = torch.nn.functional.interpolate(imgs.float(), size=(64, 64), mode="nearest").to(torch.uint8)
    assert m.preprocess(big).shape == (2, 3, 32, 32)
    assert m.encode_image(big).shape == (2, 256)
    with pytest.raises(ValueError, match="uint8"):
        m.encode_image(imgs.float())


def test_mean_and_cls_pooling_against_a_loop():
    hidden = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    mean = pool_tokens(hidden, mask, "mean")
    torch.testing.assert_close(mean[0], hidden[0, :3].mean(0))
    torch.testing.assert_close(mean[1], hidden[1].mean(0))
    torch.testing.assert_close(pool_tokens(hidden, mask, "cls"), hidden[:, 0])


def test_frozen_towers_stay_in_eval_mode_and_get_no_gradient():
    m = _model(freeze_image=True, freeze_text=True, head="mlp")
    m.train()
    assert not m.image_tower.training and not m.text_tower.training
    assert m.image_head.training and m.text_head.training  # heads still train (dropout on)
    assert all(not p.requires_grad for p in m.image_tower.parameters())
    assert all(not p.requires_grad for p in m.text_tower.parameters())
    bn = next(mod for mod in m.image_tower.modules() if isinstance(mod, torch.nn.BatchNorm2d))
    stats = bn.running_mean.clone()
    tok = m.tokenize(CAPTIONS)
    f1, f2 = m.text_features(**tok), m.text_features(**tok)
    torch.testing.assert_close(f1, f2, rtol=0, atol=0)  # no dropout in the frozen text tower
    img, txt, scale = m(_images(), **tok)
    (img.sum() + txt.sum()).backward()
    torch.testing.assert_close(bn.running_mean, stats, rtol=0, atol=0)  # BN statistics untouched
    assert all(p.grad is None for p in m.image_tower.parameters())
    assert m.image_head.proj.weight.grad is not None


def test_unfrozen_tower_trains_and_updates_bn_statistics():
    m = _model()
    m.train()
    assert m.image_tower.training and m.text_tower.training
    bn = next(mod for mod in m.image_tower.modules() if isinstance(mod, torch.nn.BatchNorm2d))
    stats = bn.running_mean.clone()
    m.encode_image(_images())
    assert not torch.equal(bn.running_mean, stats)


def test_logit_scale_learned_flag_and_clamp():
    m = _model(learn_temperature=False, temperature=0.001, max_logit_scale=50.0)
    assert not m.logit_scale.requires_grad
    assert math.isclose(float(m.logit_scale), math.log(1000.0), rel_tol=1e-6)
    assert float(m.clamped_logit_scale()) == 50.0
    assert _model().logit_scale.requires_grad


def test_resnet_small_stem_and_local_weights_file(tmp_path):
    import torchvision

    torch.manual_seed(1)
    m = _model(image_tower="resnet18")
    assert m.image_tower.conv1.kernel_size == (7, 7)  # torchvision's stem by default
    small = _model(image_tower="resnet18", small_image_stem=True)
    assert small.image_tower.conv1.kernel_size == (3, 3) and isinstance(small.image_tower.maxpool, torch.nn.Identity)
    assert small.image_dim == 512 and small.encode_image(_images()).shape == (3, 256)
    # a saved small-stem tower loads back with its stem whatever the knob says
    torch.save(small.image_tower.state_dict(), tmp_path / "small.pt")
    back = _model(image_tower="resnet18", image_weights=str(tmp_path / "small.pt"))
    assert back.image_tower.conv1.kernel_size == (3, 3)
    # a torchvision state dict (7x7 stem, with fc) saved to a file, loaded with weights_only: the
    # stem follows the weights, not the knob
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pt"
    torch.save(ref.state_dict(), path)
    m2 = _model(image_tower="resnet18", image_weights=str(path), small_image_stem=True)
    assert m2.image_tower.conv1.kernel_size == (7, 7)
    torch.testing.assert_close(m2.image_tower.layer4[1].conv2.weight, ref.layer4[1].conv2.weight, rtol=0, atol=0)
    with pytest.raises(WeightsUnavailable, match="no such file"):
        _model(image_tower="resnet18", image_weights=str(tmp_path / "missing.pt"))
    torch.save({"not": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(WeightsUnavailable, match="do not fit"):
        _model(image_tower="tiny_cnn", image_weights=str(tmp_path / "bad.pt"))


def test_resnet10_width_scales_every_stage_and_keeps_torchvision_names(tmp_path):
    from contextclip.config import ConfigError

    full, half = _model(image_tower="resnet10"), _model(image_tower="resnet10", image_width=32)
    widths = [half.image_tower.get_submodule(f"layer{i}")[0].conv2.out_channels for i in (1, 2, 3, 4)]
    assert widths == [32, 64, 128, 256] and half.image_dim == 256 and full.image_dim == 512
    n_full = sum(p.numel() for p in full.image_tower.parameters())
    n_half = sum(p.numel() for p in half.image_tower.parameters())
    assert 0.2 < n_half / n_full < 0.3  # about (32 / 64)^2 of the weights
    assert set(half.image_tower.state_dict()) == set(full.image_tower.state_dict())  # same key names
    # the stages are initialised as torchvision initialises them (BatchNorm: weight 1, bias 0)
    assert torch.all(half.image_tower.layer3[0].bn1.weight == 1) and torch.all(half.image_tower.bn1.bias == 0)
    assert half.encode_image(_images()).shape == (3, 256)
    small = _model(image_tower="resnet10", image_width=16, small_image_stem=True)
    assert small.image_tower.conv1.out_channels == 16 and small.image_tower.conv1.kernel_size == (3, 3)
    # a saved narrow tower loads back into a tower of the same width, and into no other
    torch.save(half.image_tower.state_dict(), tmp_path / "half.pt")
    back = _model(image_tower="resnet10", image_width=32, image_weights=str(tmp_path / "half.pt"))
    torch.testing.assert_close(back.image_tower.layer4[0].conv2.weight, half.image_tower.layer4[0].conv2.weight)
    with pytest.raises(WeightsUnavailable, match="do not fit"):
        _model(image_tower="resnet10", image_weights=str(tmp_path / "half.pt"))
    with pytest.raises(ConfigError, match="image_width.*multiple of 8"):
        _model(image_tower="resnet10", image_width=20)
    with pytest.raises(ConfigError, match="image_width.*only image_tower=resnet10"):
        _model(image_tower="resnet18", image_width=32)


def test_imagenet_weights_offline_give_a_clear_error(monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(WeightsUnavailable, match="ImageNet weights for resnet18.*image_weights"):
        _model(image_tower="resnet18", image_weights="imagenet")


def test_efficientnet_lite0_package_weights_load_by_position():
    m = _model(image_tower="efficientnet_lite0", image_weights="package", image_size=64)
    sd = torch.load(efficientnet_lite0_file(), map_location="cpu", weights_only=True)
    first = next(iter(sd.values()))
    torch.testing.assert_close(m.image_tower.conv_stem.weight, first, rtol=0, atol=0)
    assert m.image_dim == 1280 and m.encode_image(_images(2, 64)).shape == (2, 256)


def test_unknown_text_tower_offline_names_what_to_do():
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        _model(text_tower="/nonexistent/folder/of/a/model")
