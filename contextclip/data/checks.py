"""Validation of an ``image,caption`` manifest: every row checked, every bad row named.

A manifest is a CSV with a header naming an image column (``image``, or ``filepath``/``path``/
``file``) and a caption column (``caption``, or ``title``/``text``); image paths are relative to
the manifest's folder and may not leave it. ``check_manifest`` reads the file as bytes (so
text that is not UTF-8 is a row error, not a crash), checks each row (fields, caption,
path, duplicates) and fully decodes each image with ``images.decode_image``. The report holds
the good rows, one ``RowProblem`` per bad row and counts per kind. ``write_clean`` writes the
good rows to ``NAME.clean.csv`` beside the original, which is never edited.

Used by ``data check`` and by the ``manifest`` training source (fail fast unless skip_bad).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from contextclip import fileio
from contextclip.data.images import DEFAULT_MAX_PIXELS, MIN_SIDE, ImageProblem, decode_image
from contextclip.errors import ManifestError

IMAGE_COLUMNS = ("image", "filepath", "path", "file")
CAPTION_COLUMNS = ("caption", "title", "text")
ROW_KINDS = (
    "missing field", "undecodable text", "empty caption", "path escapes folder", "duplicate row",
    "missing file", "empty file", "truncated file", "not an image", "unreadable mode", "too small",
    "decompression bomb", "non-finite pixels", "oversized field",
)
MAX_FIELD_CHARS = 10_000  # a longer path or caption is an "oversized field" row (the CSV module's limit is 131,072)
_CSV_READ_LIMIT = 1 << 26  # fields up to 64 MiB are read (and then named), not a whole-file CSV error
_SURROGATE = re.compile("[\udc80-\udcff]")


@dataclass
class RowProblem:
    line: int  # line number in the file (the header is line 1)
    path: str
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.path or '<no path>'}: {self.kind}: {self.reason}"


@dataclass
class ManifestReport:
    manifest: Path
    n_rows: int = 0
    good: list[tuple[int, str, str]] = field(default_factory=list)  # (line, relative path, caption)
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.manifest.parent

    def counts(self) -> dict[str, int]:
        c = Counter(p.kind for p in self.problems)
        return {k: c[k] for k in ROW_KINDS if c[k]}

    def to_dict(self, max_rows: int = 200) -> dict:
        return {
            "manifest": str(self.manifest), "n_rows": self.n_rows, "n_good": len(self.good),
            "n_bad": len(self.problems), "bad_by_kind": self.counts(),
            "bad_rows": [vars(p) for p in self.problems[:max_rows]],
        }

    def format(self, max_rows: int | None = None) -> str:
        lines = [f"manifest: {self.manifest} ({self.n_rows} rows)", f"good rows: {len(self.good)}",
                 f"bad rows: {len(self.problems)}"]
        for kind, n in self.counts().items():
            lines.append(f"  {kind}: {n}")
        shown = self.problems if max_rows is None else self.problems[:max_rows]
        lines += [f"  {p}" for p in shown]
        if len(shown) < len(self.problems):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)


def _pick_column(header: list[str], names: tuple[str, ...]) -> int | None:
    low = [h.strip().lower() for h in header]
    for n in names:
        if n in low:
            return low.index(n)
    return None


def read_rows(manifest: Path) -> tuple[int, int, list[tuple[int, list[str]]]]:
    """(image column, caption column, [(line, fields)]) of a manifest; ManifestError if unusable."""
    manifest = Path(manifest)
    if not manifest.is_file():
        if manifest.exists():  # a folder, a device (/dev/zero), a FIFO: never read (it may not end)
            what = "a folder" if manifest.is_dir() else "not a regular file (a device, a pipe or a socket)"
            raise ManifestError(f"manifest {manifest} is {what}; give the path to an image,caption CSV file")
        raise ManifestError(f"manifest {manifest} does not exist; give the path to an image,caption CSV")
    raw = manifest.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    text = raw.decode("utf-8", errors="surrogateescape")
    if csv.field_size_limit() < _CSV_READ_LIMIT:
        csv.field_size_limit(_CSV_READ_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ManifestError(f"manifest {manifest} is empty; expected a header line 'image,caption'") from None
    except csv.Error as exc:
        raise ManifestError(f"manifest {manifest}: not a readable CSV ({exc})") from None
    img_col, cap_col = _pick_column(header, IMAGE_COLUMNS), _pick_column(header, CAPTION_COLUMNS)
    if img_col is None or cap_col is None:
        missing = [n for n, c in (("image", img_col), ("caption", cap_col)) if c is None]
        raise ManifestError(
            f"manifest {manifest}: missing column(s) {missing}; the header is {header!r}. "
            f"The first line must name an image column ({'/'.join(IMAGE_COLUMNS)}) and a caption "
            f"column ({'/'.join(CAPTION_COLUMNS)}), e.g. 'image,caption'"
        )
    rows = []
    try:
        line = reader.line_num
        for fields in reader:
            rows.append((line + 1, fields))
            line = reader.line_num
    except csv.Error as exc:
        raise ManifestError(f"manifest {manifest}: CSV syntax error near line {reader.line_num}: {exc}") from None
    _check_quotes(manifest, text, rows)
    if not any(f and any(x.strip() for x in f) for _, f in rows):
        raise ManifestError(f"manifest {manifest} has a header but no rows; add one 'image,caption' line per pair")
    return img_col, cap_col, rows


def _check_quotes(manifest: Path, text: str, rows: list[tuple[int, list[str]]]) -> None:
    """A quote that never closes swallows every later line into one field: name the line it opens on."""
    if not rows:
        return
    line, _ = rows[-1]
    # the last record ran to the end of the file inside quotes when re-reading it strictly says so
    start = sum(len(s) for s in io.StringIO(text, newline="").readlines()[: line - 1])
    try:
        list(csv.reader(io.StringIO(text[start:], newline=""), strict=True))
    except csv.Error as exc:
        if "unexpected end of data" not in str(exc):
            return
        raise ManifestError(
            f"manifest {manifest}, line {line}: a quote (\") opens there and never closes, so every line after "
            "it would be read as one caption; close the quote or double any quote inside a caption (\"\")"
        ) from None


def check_manifest(manifest: str | Path, *, decode: bool = True, min_side: int = MIN_SIDE,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> ManifestReport:
    """Check every row of ``manifest``; ManifestError only when the file as a whole is unusable."""
    manifest = Path(manifest)
    img_col, cap_col, rows = read_rows(manifest)
    folder = manifest.parent.resolve()
    report = ManifestReport(manifest=manifest)
    seen: dict[tuple[str, str], int] = {}
    for line, fields in rows:
        if not fields or all(not f.strip() for f in fields):
            continue  # blank line
        report.n_rows += 1
        if len(fields) <= max(img_col, cap_col):
            report.problems.append(RowProblem(line, fields[0] if fields else "", "missing field",
                                              f"expected at least {max(img_col, cap_col) + 1} fields, got {len(fields)}"))
            continue
        rel, caption = fields[img_col].strip(), fields[cap_col]
        long_field = max(range(len(fields)), key=lambda i: len(fields[i]))
        if len(fields[long_field]) > MAX_FIELD_CHARS:
            report.problems.append(RowProblem(line, rel[:80],
                                              "oversized field", f"field {long_field + 1} has "
                                              f"{len(fields[long_field]):,} characters (at most {MAX_FIELD_CHARS:,})"))
            continue
        shown = _SURROGATE.sub("?", rel)
        if _SURROGATE.search(rel) or _SURROGATE.search(caption):
            where = "caption" if _SURROGATE.search(caption) else "image path"
            report.problems.append(RowProblem(line, shown, "undecodable text", f"the {where} has bytes that are not UTF-8"))
            continue
        if not caption.strip():
            report.problems.append(RowProblem(line, rel, "empty caption", "the caption is empty or whitespace"))
            continue
        if not rel:
            report.problems.append(RowProblem(line, rel, "missing field", "the image path is empty"))
            continue
        full = (folder / rel).resolve()
        if not full.is_relative_to(folder):
            report.problems.append(RowProblem(line, rel, "path escapes folder",
                                              f"resolves to {full}, outside the manifest folder {folder}"))
            continue
        key = (str(full), caption.strip())
        if key in seen:
            report.problems.append(RowProblem(line, rel, "duplicate row", f"same image and caption as line {seen[key]}"))
            continue
        seen[key] = line
        if decode:
            try:
                decode_image(full, min_side=min_side, max_pixels=max_pixels)
            except ImageProblem as exc:
                report.problems.append(RowProblem(line, rel, exc.kind, exc.reason))
                continue
        report.good.append((line, rel, caption.strip()))
    return report


def clean_path(manifest: Path) -> Path:
    manifest = Path(manifest)
    return manifest.with_name(f"{manifest.stem}.clean.csv")


def write_clean(report: ManifestReport) -> Path:
    """Write the good rows to ``<stem>.clean.csv`` beside the manifest (the original is untouched)."""
    out = clean_path(report.manifest)
    if out.resolve() == Path(report.manifest).resolve():  # pragma: no cover - different names by construction
        raise ManifestError(f"refusing to overwrite the original manifest {out}")
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["image", "caption"])
    for _, rel, caption in report.good:
        w.writerow([rel, caption])
    fileio.atomic_write(out, text.getvalue())
    return out
