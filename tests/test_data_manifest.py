"""`data check` and the manifest training source: one test per bad kind, valid odd modes, --skip-bad."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hostile_inputs import png, png_declaring
from PIL import Image

from contextclip.config import load_config
from contextclip.data import build_pair_datasets
from contextclip.data.checks import ManifestError, check_manifest, clean_path
from contextclip.data.cli import run_check
from contextclip.data.images import decode_image


def _write(tmp_path, rows: list[str], header="image,caption", raw: bytes | None = None):
    m = tmp_path / "pairs.csv"
    if raw is not None:
        m.write_bytes(raw)
    else:
        m.write_text("\n".join([header] + rows) + "\n", encoding="utf-8")
    return m


def _one_bad(tmp_path, rel: str, caption: str = "a red square", setup=None):
    (tmp_path / "good.png").write_bytes(png())
    if setup:
        setup(tmp_path)
    m = _write(tmp_path, ["good.png,a good image", f"{rel},{caption}"])
    rep = check_manifest(m)
    assert len(rep.good) == 1, rep.format()
    assert len(rep.problems) == 1, rep.format()
    p = rep.problems[0]
    assert p.line == 3
    return p


@pytest.mark.parametrize("kind,rel,caption,setup", [
    ("missing file", "nope.png", "x", None),
    ("empty file", "empty.png", "x", lambda d: (d / "empty.png").write_bytes(b"")),
    ("truncated file", "trunc.png", "x", lambda d: (d / "trunc.png").write_bytes(png((64, 64))[:-40])),
    ("not an image", "page.jpg", "x", lambda d: (d / "page.jpg").write_text("<html>404 not found</html>")),
    ("too small", "tiny.png", "x", lambda d: (d / "tiny.png").write_bytes(png((8, 8)))),
    ("empty caption", "good.png", "   ", None),
    ("path escapes folder", "../outside.png", "x", None),
    ("duplicate row", "good.png", "a good image", None),
])
def test_each_bad_kind_is_named(tmp_path, kind, rel, caption, setup):
    p = _one_bad(tmp_path, rel, caption, setup)
    assert p.kind == kind, str(p)
    assert (rel in str(p)) and "line 3" in str(p)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    p = _one_bad(tmp_path, "t.jpg", setup=lambda d: (d / "t.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2]))
    assert p.kind == "truncated file"


def test_undecodable_text(tmp_path):
    (tmp_path / "good.png").write_bytes(png())
    raw = b"image,caption\ngood.png,fine\ngood.png,caf\xe9 latin-1 bytes\n"
    rep = check_manifest(_write(tmp_path, [], raw=raw))
    assert [p.kind for p in rep.problems] == ["undecodable text"] and rep.problems[0].line == 3


def test_missing_field_and_missing_columns(tmp_path):
    (tmp_path / "good.png").write_bytes(png())
    rep = check_manifest(_write(tmp_path, ["good.png,ok", "good.png"]))
    assert [p.kind for p in rep.problems] == ["missing field"]
    with pytest.raises(ManifestError, match="missing column"):
        check_manifest(_write(tmp_path, ["good.png,ok"], header="file_name,label"))


def test_decompression_bomb(tmp_path):
    (tmp_path / "big.png").write_bytes(png((200, 200)))
    with pytest.raises(ValueError, match="decompression bomb"):
        decode_image(tmp_path / "big.png", max_pixels=10_000)
    # PIL's own guard (header of a PNG claiming a huge size) is also a row error, not a crash
    bomb = png_declaring(40000, 40000, crc_right=False)  # IHDR width/height, CRC now wrong: still refused
    p = _one_bad(tmp_path, "bomb.png", setup=lambda d: (d / "bomb.png").write_bytes(bomb))
    assert p.kind in ("decompression bomb", "not an image", "truncated file")


def test_unreadable_mode(tmp_path, monkeypatch):
    from contextclip.data import images as im

    # a mode outside the kit's conversion table (here LA, taken out of it) is a row error
    monkeypatch.setattr(im, "RGB_MODES", im.RGB_MODES - {"LA"})
    p = _one_bad(tmp_path, "x.png", setup=lambda d: (d / "x.png").write_bytes(png(mode="LA", colour=(9, 255))))
    assert p.kind == "unreadable mode"


def test_odd_but_valid_modes_become_rgb(tmp_path):
    imgs = {
        "grey.png": Image.new("L", (20, 20), 128),
        "rgba.png": Image.new("RGBA", (20, 20), (255, 0, 0, 0)),  # fully transparent -> white
        "cmyk.jpg": Image.new("CMYK", (20, 20), (0, 255, 255, 0)),
        "sixteen.png": Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16)),
    }
    pal = Image.new("P", (20, 20), 0)
    pal.putpalette([0, 0, 255] + [0] * 765)
    pal.info["transparency"] = 1
    imgs["palette.png"] = pal
    for name, img in imgs.items():
        img.save(tmp_path / name)
    exif_img = Image.new("RGB", (40, 20), (0, 200, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: a 40x20 stored image is shown 20x40
    exif_img.save(tmp_path / "exif.jpg", exif=exif)
    m = _write(tmp_path, [f"{n},caption {n}" for n in list(imgs) + ["exif.jpg"]])
    rep = check_manifest(m)
    assert not rep.problems, rep.format()
    assert decode_image(tmp_path / "rgba.png").getpixel((0, 0)) == (255, 255, 255)
    assert decode_image(tmp_path / "sixteen.png").getpixel((0, 0)) == (255, 255, 255)
    assert decode_image(tmp_path / "palette.png").getpixel((0, 0)) == (0, 0, 255)
    assert decode_image(tmp_path / "exif.jpg").size == (20, 40)
    assert all(decode_image(tmp_path / n).mode == "RGB" for n in imgs)


def test_cli_exit_codes_and_clean_copy(tmp_path, capsys):
    (tmp_path / "good.png").write_bytes(png())
    m = _write(tmp_path, ["good.png,ok", "missing.png,gone", "good.png,  "])
    original = m.read_bytes()
    assert run_check(m) == 1
    out = capsys.readouterr().out
    assert "missing file: 1" in out and "empty caption: 1" in out and "line 3: missing.png" in out
    assert not clean_path(m).exists()
    assert run_check(m, skip_bad=True) == 0
    assert m.read_bytes() == original
    assert clean_path(m).read_text().splitlines() == ["image,caption", "good.png,ok"]
    assert run_check(clean_path(m)) == 0


def test_manifest_training_source_fails_fast_or_counts(tmp_path):
    for i in range(6):
        (tmp_path / f"{i}.png").write_bytes(png(colour=(40 * i, 0, 0)))
    m = _write(tmp_path, [f"{i}.png,image {i}" for i in range(6)] + ["gone.png,missing"])
    cfg = load_config("smoke", {"train_data": "manifest", "manifest": str(m), "data_root": str(tmp_path)})
    with pytest.raises(ManifestError, match="line 8: gone.png: missing file"):
        build_pair_datasets(cfg)
    tr, va = build_pair_datasets(cfg.updated({"skip_bad": True}))
    assert len(tr) + len(va) == 6
    assert tr.report["n_bad"] == 1 and tr.report["bad_by_kind"] == {"missing file": 1}
    img, cap = va[0]
    assert img.shape == (3, 32, 32) and cap.startswith("image ")
