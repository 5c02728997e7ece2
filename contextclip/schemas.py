"""Schemas of the files the kit writes and reads back, and the one error a damaged one raises.

Every file the kit writes and later trusts (``pipeline_state.json``, a run's ``summary.json``,
``history.jsonl``, the checkpoint's metadata, the embedding caches, the lock records) is
checked against a small schema when it is read. A file that does not match is *damaged*
(cut short, edited by hand, written by something else): ``DamagedFileError`` names the file,
the first key that is wrong, and what to do, in one line. ``config.json`` is checked by
``Config.from_dict`` and ``metrics.csv`` by ``results.read_metrics``, with the same error.

A schema is plain data:

- a type (``int``, ``float``, ``str``, ``bool``, ``dict``, ``list``, ``type(None)``): ``float``
  takes an int too and must be finite; ``int`` never takes a bool;
- a tuple of schemas: any one of them;
- a dict ``{"key": schema, "key?": schema}``: a JSON object with those keys (``?``: optional);
  other keys are allowed (a newer kit may add some);
- ``ListOf(schema)``, ``MapOf(schema)`` (string keys), ``Choice(*values)``, ``Pair(a, b)``.

What this module is not: it does not read or write files (each owner does, then calls
``validate``), and it is not a configuration checker (``config.py``).

Why hand-written and not pydantic: see docs/decisions.md ("Schemas of the kit's own files").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contextclip.errors import DamagedFileError


def damaged(path: str | Path, problem: str, what_to_do: str) -> DamagedFileError:
    """``DamagedFileError("<path> is damaged: <problem>. What to do: <what_to_do>")``."""
    return DamagedFileError(f"{path} is damaged: {problem}. What to do: {what_to_do}")


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class MapOf:
    value: Any


@dataclass(frozen=True)
class Pair:
    first: Any
    second: Any


class Choice:
    def __init__(self, *values: Any):
        self.values = values


def _name(schema: Any) -> str:
    if isinstance(schema, type):
        return {type(None): "null", dict: "an object", list: "a list", int: "an integer", float: "a number",
                str: "a string", bool: "true or false"}.get(schema, schema.__name__)
    if isinstance(schema, tuple):
        return " or ".join(_name(s) for s in schema)
    if isinstance(schema, Choice):
        return "one of " + ", ".join(repr(v) for v in schema.values)
    if isinstance(schema, ListOf):
        return f"a list of {_name(schema.item)}"
    if isinstance(schema, (MapOf, dict)):
        return "an object"
    if isinstance(schema, Pair):
        return f"a pair [{_name(schema.first)}, {_name(schema.second)}]"
    return str(schema)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problem(value: Any, schema: Any, where: str = "") -> str | None:
    """The first way ``value`` does not match ``schema`` (``"key 'a.b': ..."``), or None when it matches."""
    at = f"key '{where}'" if where else "the top level"
    if isinstance(schema, tuple):
        if any(problem(value, s, where) is None for s in schema):
            return None
        return f"{at} should be {_name(schema)}, not {_short(value)}"
    if isinstance(schema, type):
        if schema is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        elif schema is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, schema)
        return None if ok else f"{at} should be {_name(schema)}, not {_short(value)}"
    if isinstance(schema, Choice):
        ok = any(value == v and type(value) is type(v) for v in schema.values)
        return None if ok else f"{at} should be {_name(schema)}, not {_short(value)}"
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            return f"{at} should be {_name(schema)}, not {_short(value)}"
        for i, v in enumerate(value):
            p = problem(v, schema.item, f"{where}[{i}]")
            if p:
                return p
        return None
    if isinstance(schema, Pair):
        if not isinstance(value, list) or len(value) != 2:
            return f"{at} should be {_name(schema)}, not {_short(value)}"
        return problem(value[0], schema.first, f"{where}[0]") or problem(value[1], schema.second, f"{where}[1]")
    if isinstance(schema, MapOf):
        if not isinstance(value, dict):
            return f"{at} should be an object, not {_short(value)}"
        for k, v in value.items():
            p = problem(v, schema.value, f"{where}.{k}" if where else str(k))
            if p:
                return p
        return None
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return f"{at} should be an object, not {_short(value)}"
        for key, sub in schema.items():
            optional = key.endswith("?")
            name = key[:-1] if optional else key
            full = f"{where}.{name}" if where else name
            if name not in value:
                if optional:
                    continue
                return f"key '{full}' is missing"
            p = problem(value[name], sub, full)
            if p:
                return p
        return None
    raise TypeError(f"unknown schema {schema!r}")  # a bug in the kit, not the file


def validate(value: Any, schema: Any, path: str | Path, what_to_do: str) -> Any:
    """``value`` when it matches ``schema``; else ``DamagedFileError`` naming ``path`` and ``what_to_do``."""
    p = problem(value, schema)
    if p:
        raise damaged(path, p, what_to_do)
    return value


# --------------------------------------------------------------------------- the kit's files
SHA256 = str  # 64 hex digits; checked as a string (a wrong digest is a mismatch, not damage)
NUMBER_OR_NULL = (float, type(None))

#: ``runs/<profile>/pipeline_state.json`` (``contextclip.pipeline``)
PIPELINE_STEP = {"fingerprint": str, "output_digest": str, "outputs": MapOf(SHA256), "parameters": dict,
                 "seconds?": float, "finished?": str, "executed?": str}
PIPELINE_RUNNING = {"notebook": str, "before": MapOf(Pair(int, int))}
PIPELINE_STATE = {"version": int, "notebooks": MapOf(PIPELINE_STEP), "running?": PIPELINE_RUNNING}

#: what ``train._finish`` writes last in a run folder (``checkpoint`` since the kit pins it)
CHECKPOINT_RECORD = {"size": int, "mtime_ns": int, "sha256": SHA256}
SUMMARY = {"method": str, "seed": int, "training_numerics?": int, "final_val_loss?": NUMBER_OR_NULL, "epochs?": int,
           "steps?": int, "seconds?": float, "pairs_per_second?": NUMBER_OR_NULL, "checkpoint?": CHECKPOINT_RECORD}

#: one line of ``history.jsonl``
HISTORY_LINE = {"type": Choice("step", "epoch"), "global_step": int, "epoch?": int}

#: the metadata of ``checkpoint.pt`` (its tensors are checked by ``runs.load_checkpoint``)
CHECKPOINT_META = {"config": dict, "method": str, "seed": int, "epoch": int, "step": int, "model": dict,
                   "optimizer": dict}


__all__ = ["DamagedFileError", "damaged", "problem", "validate", "ListOf", "MapOf", "Pair", "Choice",
           "PIPELINE_STATE", "SUMMARY", "HISTORY_LINE", "CHECKPOINT_META", "CHECKPOINT_RECORD"]
