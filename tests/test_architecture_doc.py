"""docs/architecture.md names only what exists: every ``module.name`` it cites, every function in its
signature blocks, every ``contextclip/...py`` path, every image tower, text tower and config section."""

from __future__ import annotations

import importlib
import re
from types import ModuleType

import pytest

from contextclip.config import CHOICES, REPO_ROOT, SECTIONS

DOC = REPO_ROOT / "docs" / "architecture.md"
#: file suffixes: `config.json` or `model.py` is a file, not a module attribute
FILE_SUFFIXES = {"json", "jsonl", "pt", "csv", "md", "npz", "npy", "png", "pdf", "py", "ipynb", "yaml", "yml",
                 "txt", "tar", "lock", "tmp"}
_DOTTED = re.compile(r"\b((?:contextclip\.)?[a-z_][a-z0-9_]*(?:\.[A-Za-z_]\w*)+)")


def _module(name: str) -> ModuleType | None:
    """The package module ``name`` names (``results``, ``registry``, ``contextclip.data.sets``), or None."""
    name = name.removeprefix("contextclip.")
    for full in (f"contextclip.{name}", f"contextclip.data.{name}"):
        try:
            return importlib.import_module(full)
        except ImportError:
            continue
    return None


def resolve(dotted: str, default_modules: list[ModuleType] = ()) -> bool | None:
    """True if ``dotted`` names something that exists, False if its module exists but the name does not,
    None if it does not start with a module of the package (a variable such as ``cfg.data``)."""
    parts = dotted.split(".")
    if parts[-1] in FILE_SUFFIXES:
        return None
    for cut in range(len(parts), 0, -1):  # the longest prefix that is a module
        module = _module(".".join(parts[:cut]))
        if module is not None:
            break
    else:
        if len(parts) == 1 and default_modules:
            return any(hasattr(m, parts[0]) for m in default_modules)
        return None
    obj = module
    for attr in parts[cut:]:
        if not hasattr(obj, attr):
            section_knob = len(parts) == 2 and parts[0] in SECTIONS and parts[1] in SECTIONS[parts[0]].__dataclass_fields__
            return True if section_knob else False  # `train.ema_decay` is the knob, not the module
        obj = getattr(obj, attr)
    return True


def cited_names() -> list[tuple[int, str]]:
    """(line, dotted name) of every ``module.name`` in inline code or a code block."""
    out = []
    in_code = False
    for i, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```"):
            in_code = not in_code
            continue
        spans = [line] if in_code else re.findall(r"`([^`]+)`", line)
        out += [(i, m) for span in spans for m in _DOTTED.findall(span)]
    return out


def _depth0(text: str) -> str:
    """``text`` with everything inside brackets and quotes removed (keeps the brackets themselves)."""
    out, depth, quote = [], 0, None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
            if depth == 1:
                out.append(ch)
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                out.append(ch)
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def signature_names() -> list[tuple[int, str, list[str]]]:
    """(line, name, modules in scope) of each function, class or constant a signature block defines.

    The modules in scope are the ``NAME.py`` of the section heading, or of a ``# NAME.py`` comment line
    inside the block; a name after a dotted one on the same line belongs to that one's module.
    """
    out, in_code, modules, last_class = [], False, [], None
    for i, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("## "):
            modules = re.findall(r"([a-z_]+)\.py", line)
        if line.startswith("```"):
            in_code = not in_code
            continue
        if not in_code:
            continue
        if re.match(r"# [a-z_]+\.py", line):
            modules = re.findall(r"^# ([a-z_]+)\.py", line)
            continue
        code = re.sub(r"<\w+>", "", re.split(r"\s{2,}#|^#", line)[0])  # `exercises.<claim>(...)`: the module
        if not code.strip() or code.lstrip().startswith(("@", "#")):
            continue
        if code[0] == " ":  # a method of the class above: `def name(`
            m = re.match(r"\s+def (\w+)\(", code)
            if m and last_class:
                out.append((i, f"{last_class}.{m.group(1)}", modules))
            continue
        flat = _depth0(code)
        m = re.match(r"class (\w+)", flat)
        if m:
            last_class = m.group(1)
            out.append((i, last_class, modules))
            continue
        names = re.findall(r"([A-Za-z_][\w.]*)\(", flat)
        if not names:  # `NAME: type` or `A, B, C`
            names = re.findall(r"[A-Za-z_][\w.]*", re.split(r"[:#]|->", flat)[0])
        owner = re.match(r"([A-Z]\w*)\(\):", flat)  # `Class(args): method(), method()`
        if owner:
            names = [names[0], *(f"{owner.group(1)}.{n}" for n in names[1:])]
        line_modules = list(modules)
        for name in (n.rstrip(".") for n in names):
            if "." in name and not name[0].isupper():
                head = name.rsplit(".", 1)[0]
                line_modules = [head, *line_modules] if _module(head) else line_modules
            out.append((i, name, line_modules))
    return out


def test_every_module_name_the_doc_cites_exists():
    cited = cited_names()
    assert len(cited) > 40
    missing = [(i, n) for i, n in cited if resolve(n) is False]
    assert missing == []


def test_every_name_in_the_signature_blocks_exists():
    names = signature_names()
    assert len(names) > 60
    missing = []
    for i, name, modules in names:
        scope = [m for m in (_module(x) for x in modules) if m is not None]
        found = resolve(name, scope)
        if "." in name and found is None:  # Class.method: look in the section's modules
            cls, attr = name.split(".", 1)
            found = any(hasattr(getattr(m, cls, None), attr) for m in scope)
        if not found:
            missing.append((i, name, modules))
    assert missing == []


def test_every_file_of_the_package_the_doc_names_exists():
    text = DOC.read_text(encoding="utf-8")
    paths = set(re.findall(r"contextclip/[\w/]+\.py", text))
    assert paths and [p for p in sorted(paths) if not (REPO_ROOT / p).is_file()] == []


@pytest.mark.parametrize("what", ["image_tower", "text_tower", "config_section"])
def test_the_doc_lists_every_tower_and_every_config_section(what):
    from contextclip.model import TEXT_TOWERS

    text = DOC.read_text(encoding="utf-8")
    if what == "config_section":
        section = text.split("## config.py", 1)[1].split("\n## ", 1)[0]
        listed = re.search(r"sections `([^`]+)`", section).group(1)
        assert [s.strip() for s in listed.split(",")] == list(SECTIONS)
        return
    names = CHOICES["image_tower"] if what == "image_tower" else tuple(TEXT_TOWERS)
    assert [n for n in names if f"`{n}`" not in text] == []


def test_the_checks_catch_a_name_that_is_gone():
    assert resolve("distributed.reduce_mean") is False and resolve("distributed.gather_embeddings") is True
    assert resolve("contextclip.data.registry.resolve_root") is True and resolve("registry.nope") is False
    assert resolve("train.ema_decay") is True and resolve("cfg.data.augment") is None
    assert resolve("summary.json") is None and resolve("model.py") is None
    assert _depth0('f(a, (b)) -> "x(y)" [1, 2]') == 'f() ->  []'  # the quoted text is gone
