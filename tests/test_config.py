"""Config: profiles load, bad keys/types/values are errors naming the key, safe YAML only."""

import json

import pytest
import yaml

from contextclip.config import (
    CONFIG_DIR,
    KNOB_SECTION,
    Config,
    ConfigError,
    config_from_json,
    load_config,
    parse_override,
    save_config,
)


@pytest.mark.parametrize("profile", ["smoke", "embedded", "paper"])
def test_profiles_load_and_roundtrip(profile, tmp_path):
    cfg = load_config(profile)
    assert cfg.profile == profile
    save_config(cfg, tmp_path / "config.json")
    again = config_from_json(tmp_path / "config.json")
    assert again.to_dict() == cfg.to_dict()


def test_profile_headers_state_command_and_time():
    for path in CONFIG_DIR.glob("*.yaml"):
        head = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
        assert "Command" in head and "time" in head.lower(), path


def test_paper_profile_carries_the_papers_settings():
    c = load_config("paper")
    assert (c.model.image_tower, c.model.text_tower, c.model.head, c.model.embed_dim) == (
        "resnet50", "bert-base-uncased", "linear", 256)
    assert c.loss.image_to_text_weight == 0.75 and c.loss.temperature == 1.0 and c.loss.learn_temperature
    assert c.loss.alpha == 0.5  # Sec. 3.2: "alpha is a constant with value of 0.5"


def test_settings_the_paper_does_not_give_are_labelled_ours():
    """h = 0.5 and the `batch` reading of a point are our choices: the paper profile says so, and
    the decisions record quotes the paper's own wording (|U| = |V| = 256) beside the reading."""
    c = load_config("paper")
    assert c.loss.bandwidth == 0.5 and c.loss.cx_variant == "batch"
    header = (CONFIG_DIR / "paper.yaml").read_text().split("\ndata:")[0]
    assert "h = 0.5 is ours" in header and "the paper gives no h" in header
    assert "|U| = |V| = 256" in header
    decisions = (CONFIG_DIR.parent / "docs" / "decisions.md").read_text()
    assert "**not given** | 0.5, **ours**" in decisions
    assert "The default `batch`\nvariant is our reading, not the paper's" in decisions
    assert "|U| = |V| = 256 in a batch" in decisions
    assert c.train.optimizer == "adam" and c.train.weight_decay == 1e-3
    assert (c.train.lr_image, c.train.lr_text) == (1e-4, 1e-6)
    assert (c.train.batch_size, c.train.epochs, c.data.image_size) == (32, 30, 224)


@pytest.mark.parametrize(
    "override, words",
    [
        ({"batch_size": 1}, ["batch_size", "1", ">= 2"]),
        ({"lr_image": -1e-3}, ["lr_image", "-0.001"]),
        ({"bandwidth": 0.0}, ["bandwidth", "> 0"]),
        ({"alpha": -0.5}, ["alpha", "-0.5"]),
        ({"cx_variant": "pixels"}, ["cx_variant", "pixels", "batch"]),
        ({"epochs": "3"}, ["epochs", "integer"]),
        ({"augment": "yes"}, ["augment", "true or false"]),
        ({"bogus_knob": 1}, ["bogus_knob", "Valid keys"]),
        ({"train.alpha": 1.0}, ["train.alpha", "unknown"]),
        ({"methods": ["clip", "simclr"]}, ["methods", "simclr"]),
        ({"bandwidth": float("nan")}, ["bandwidth"]),
    ],
)
def test_bad_values_name_the_key(override, words):
    with pytest.raises(ConfigError) as info:
        load_config("smoke", override)
    for w in words:
        assert w in str(info.value)


def test_overrides_flat_dotted_and_cli_strings_agree():
    a = load_config("smoke", {"batch_size": 8})
    b = load_config("smoke", {"train.batch_size": 8})
    c = load_config("smoke", ["batch_size=8"])
    assert a.train.batch_size == b.train.batch_size == c.train.batch_size == 8
    assert parse_override("seeds=[0, 1]") == ("seeds", [0, 1])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("batch_size")


def test_for_method_clip_sets_alpha_zero_only():
    cfg = load_config("smoke")
    clip = cfg.for_method("clip")
    assert clip.loss.alpha == 0.0 and cfg.loss.alpha == 0.5
    assert {k: v for k, v in clip.to_flat().items() if k != "alpha"} == {
        k: v for k, v in cfg.to_flat().items() if k != "alpha"}
    with pytest.raises(ConfigError):
        cfg.for_method("simclr")


def test_unknown_section_key_in_yaml_is_refused(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("base: smoke\nloss:\n  alpah: 0.3\n")
    with pytest.raises(ConfigError, match="loss.alpah"):
        load_config(p)


def test_yaml_overlay_on_a_base_profile(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("base: smoke\nloss:\n  alpha: 0.25\n")
    cfg = load_config(p)
    assert cfg.loss.alpha == 0.25 and cfg.model.image_tower == "tiny_cnn" and cfg.profile == "mine"


def test_yaml_with_python_object_tags_is_refused(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("train:\n  epochs: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="safe"):
        load_config(p)


def test_manifest_training_needs_a_manifest_path():
    with pytest.raises(ConfigError, match="manifest"):
        load_config("smoke", {"train_data": "manifest"})


def test_every_knob_name_is_unique_across_sections():
    from dataclasses import fields

    from contextclip.config import SECTIONS

    names = [f.name for cls in SECTIONS.values() for f in fields(cls)]
    assert len(names) == len(set(names)) == len(KNOB_SECTION)


def test_saved_config_is_json_with_sections(tmp_path):
    save_config(Config(), tmp_path / "c.json")
    d = json.loads((tmp_path / "c.json").read_text())
    assert set(d) == {"profile", "data", "model", "loss", "train", "eval", "sensitivity", "pipeline"}


def test_environment_yml_parses_and_points_at_requirements():
    from contextclip.config import REPO_ROOT

    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "-r requirements.txt" in pip_section
    reqs = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    pins = [r for r in reqs if r.strip() and not r.startswith("#")]
    assert all("==" in r for r in pins), [r for r in pins if "==" not in r]
    assert "torch==2.14.1" in pins and "torchvision==0.29.1" in pins


def test_every_registry_has_exactly_the_choices_of_its_knob():
    """``CHOICES`` is the one list of each knob's values; each registry that implements a knob has those keys."""
    from contextclip import distributed, losses, model, plots, train
    from contextclip.config import CHOICES
    from contextclip.data import pairs

    registries = {
        "image_tower": model.IMAGE_TOWERS, "head": model.HEADS, "pooling": model.POOLINGS,
        "cx_variant": losses.CX_VARIANTS, "optimizer": train.OPTIMIZERS, "scheduler": train.SCHEDULERS,
        "device": distributed.DEVICE_PREFS, "train_data": pairs.SOURCES,
    }
    for knob, registry in registries.items():
        assert tuple(registry) == CHOICES[knob], knob  # same names, in the order the messages list them
    assert set(plots.VARIANT_COLOURS) == set(CHOICES["cx_variant"])
    # every knob with choices is either a registry above or one branch per value in the code
    assert set(CHOICES) - set(registries) == {"missing_datasets", "precision", "ft_init"}


@pytest.mark.parametrize("knob", ["image_tower", "head", "pooling", "optimizer", "scheduler", "precision",
                                  "ft_init", "cx_variant", "device", "train_data", "missing_datasets"])
def test_a_bad_choice_names_the_knob_and_lists_its_choices(knob):
    from contextclip.config import CHOICES

    with pytest.raises(ConfigError) as info:
        load_config("smoke", {knob: "nope"})
    assert str(info.value) == f"config key '{knob}': 'nope' is not one of {list(CHOICES[knob])}"


def test_code_past_the_config_refuses_a_bad_choice_with_the_same_message():
    """A value that skipped ``load_config`` (set on a dataclass by hand) is refused by the code that uses it."""
    import torch

    from contextclip.config import CHOICES
    from contextclip.model import pool_tokens
    from contextclip.train import autocast_factory, make_scheduler

    with pytest.raises(ConfigError) as info:
        pool_tokens(torch.zeros(1, 2, 3), torch.ones(1, 2), "max")
    assert str(info.value) == f"config key 'pooling': 'max' is not one of {list(CHOICES['pooling'])}"
    with pytest.raises(ConfigError, match="'precision': 'fp16'"):
        autocast_factory(torch.device("cpu"), "fp16")
    cfg = load_config("smoke")
    cfg.train.scheduler = "linear"
    with pytest.raises(ConfigError, match="'scheduler': 'linear'"):
        make_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), cfg, 10)


def test_primary_endpoints_and_seed_blocks_are_checked():
    """Primary endpoints are task/dataset/metric keys; block B must be trained seeds and leave a block A."""
    cfg = load_config("answer")
    assert cfg.eval.primary_endpoints == ["zero_shot/novel_classes/top1", "zero_shot/mnist_test/top1"]
    assert set(cfg.eval.replication_seeds) < set(cfg.train.seeds)
    # every primary endpoint of a profile is one it evaluates
    for profile in ("embedded", "answer", "pretrained"):
        c = load_config(profile)
        assert all(k.split("/")[1] in c.data.zero_shot_datasets for k in c.eval.primary_endpoints), profile
    with pytest.raises(ConfigError, match="task/dataset/metric"):
        load_config("embedded", {"primary_endpoints": ["novel_classes"]})
    with pytest.raises(ConfigError, match="replication_seeds"):
        load_config("embedded", {"replication_seeds": [99]})
    with pytest.raises(ConfigError, match="replication_seeds"):
        load_config("embedded", {"seeds": [0, 1], "replication_seeds": [1]})
    for profile in ("answer", "pretrained"):  # both answer profiles: two equal blocks of at least 15 seeds
        c = load_config(profile)
        b = set(c.eval.replication_seeds)
        assert len(b) >= 15 and len(set(c.train.seeds) - b) == len(b), profile


def test_a_config_saved_under_a_former_key_name_still_loads():
    """Run folders keep the config they were trained with; a key renamed since is read under its new name."""
    d = load_config("smoke").to_dict()
    d["sensitivity"].pop("sens_datasets")
    for old, new in (("", []), ("digits", ["digits"])):
        d["sensitivity"]["sens_dataset"] = old
        assert Config.from_dict(d).sensitivity.sens_datasets == new
    assert load_config("smoke", {"sens_dataset": "mnist_test"}).sensitivity.sens_datasets == ["mnist_test"]
    assert load_config("smoke", ["sensitivity.sens_dataset=digits"]).sensitivity.sens_datasets == ["digits"]
