"""Glue for the numbered notebooks: validate their parameters, find the profile's folders, show tables.

Every notebook's second code cell is ``cfg = setup_notebook(profile, knob=value, ...)``: the
``parameters`` cell's values go through ``contextclip.config.load_config`` so an unknown knob or a bad
value fails there, with the config's own message. ``None`` means "take the profile's value".

This module holds no method logic (losses, training, evaluation live in their own modules) and
never computes a number that a table reports; it only sets up, locates and displays.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from contextclip.config import KNOB_SECTION, REPO_ROOT, Config, ConfigError, load_config
from contextclip.errors import MissingFileError, UserError
from contextclip.layout import Outputs, ProfilePaths, outputs_for, paths_for
from contextclip.runs import environment_info as environment_summary  # noqa: F401 - for the notebooks


def profile_paths(cfg: Config, root: Path | None = None) -> ProfilePaths:
    """The run, results and figures folders of ``cfg.profile`` under the repository root."""
    return paths_for(cfg.profile, root)


def notebook_outputs(cfg: Config, recompute: bool = False, pipeline_run: bool = False, *,
                     quiet: bool = False) -> Outputs:
    """Where notebooks 03-07 (and their solutions) read and write (``layout.outputs_for``); prints its note."""
    out = outputs_for(cfg.profile, recompute=recompute, pipeline_run=pipeline_run)
    if not quiet:
        print(out.note())
    return out


#: Parameters a notebook may declare that are not config knobs: name -> (type, what it does).
NOTEBOOK_PARAMETERS: dict[str, tuple[type, str]] = {
    "fresh": (bool, "02_train: discard existing runs of these methods and seeds and train them again"),
    "recompute": (bool, "03-07: evaluate again into runs/<profile>/by_hand/ instead of showing the saved results"),
    "pipeline_run": (bool, "00-07: set by make reproduce only; write the profile's results/ and figures/"),
}

#: The first line of the cell papermill injects after the ``parameters`` cell (its Python translator).
_INJECTED_HEADER = "# Parameters\n"


def setup_notebook(profile: str = "smoke", *, chdir: bool = True, quiet: bool = False, **knobs: Any) -> Config:
    """Validate a notebook's parameters through the config and return the resolved ``Config``.

    ``knobs`` are the notebook's declared parameters other than ``profile``: flat config names
    (``epochs=3``, ``seeds=[0, 1]``; ``None`` keeps the profile's value) and the non-config names of
    ``NOTEBOOK_PARAMETERS`` (``fresh=False``), which are type-checked and not part of the config.
    An unknown name or a bad value raises ``ConfigError`` naming the key, and so does a name that
    papermill injected (``-p NAME VALUE``) but the notebook does not declare: papermill alone only
    warns and runs the defaults. Under IPython a ``UserError`` shows as one line, not a traceback.

    With ``chdir`` the working directory becomes the repository root, so that relative paths in
    the configs (``data/``, ``runs/``) mean the same in JupyterLab, under nbval and under papermill.
    Seeds nothing (seeding belongs to ``fit``).
    """
    one_line_errors()
    _check_injected({"profile", *knobs})
    extra = {k: knobs.pop(k) for k in list(knobs) if k in NOTEBOOK_PARAMETERS}
    for name, value in extra.items():
        kind = NOTEBOOK_PARAMETERS[name][0]
        if not isinstance(value, kind):
            raise ConfigError(f"notebook parameter '{name}': {value!r} is not a {kind.__name__} "
                              f"(with papermill: -p {name} True)")
    unknown = sorted(k for k in knobs if k not in KNOB_SECTION)
    if unknown:
        raise ConfigError(
            f"notebook parameter(s) {unknown} are not config knobs; valid names: {sorted(KNOB_SECTION)}"
        )
    overrides = {k: v for k, v in knobs.items() if v is not None}
    cfg = load_config(profile, overrides)
    if chdir:
        os.chdir(REPO_ROOT)
    try:
        import matplotlib

        matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "figure.max_open_warning": 0})
        from contextclip.plots import use_palette

        use_palette()
    except ImportError:  # pragma: no cover - matplotlib is a pinned requirement
        pass
    if not quiet:
        shown = {**{k: cfg.get(k) for k in knobs}, **extra}
        print(f"profile {cfg.profile!r} ({profile}); notebook parameters: {json.dumps(shown)}")
        base = load_config(profile)
        changed = sorted(k for k in overrides if base.get(k) != cfg.get(k))
        if changed:
            print(f"  changed from the profile: {', '.join(f'{k}={cfg.get(k)!r}' for k in changed)}")
    return cfg


def injected_parameters(history: list[str] | None = None) -> set[str]:
    """Names assigned by the cells papermill injected in this kernel (``In`` history), or an empty set."""
    import ast

    if history is None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover
            return set()
        ip = get_ipython()
        history = list(ip.user_ns.get("In", [])) if ip is not None else []
    names: set[str] = set()
    for src in history:
        if not isinstance(src, str) or not src.startswith(_INJECTED_HEADER):
            continue
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _check_injected(declared: set[str], history: list[str] | None = None) -> None:
    """``ConfigError`` when papermill injected a name the notebook does not declare."""
    undeclared = sorted(injected_parameters(history) - declared)
    if undeclared:
        raise ConfigError(
            f"parameter(s) {', '.join(repr(u) for u in undeclared)} are not declared by this notebook, so they "
            f"would be ignored; it declares {', '.join(sorted(declared))} (see `papermill --help-notebook NB`)"
        )


def one_line_errors() -> None:
    """Under IPython, show a ``UserError`` (a user's mistake, with its fix in the message) as one line.

    The cell still fails (papermill and nbval see the error); only the traceback is left out.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    ip = get_ipython()
    if ip is None:
        return

    def _show(shell, etype, value, tb, tb_offset=None):
        stb = [f"{etype.__name__}: {value}"]
        shell._showtraceback(etype, value, stb)  # IPython leaves showing it to the handler
        return stb

    ip.set_custom_exc((UserError,), _show)


def knob_table(cfg: Config, names: list[str] | None = None):
    """A two-column DataFrame (knob, value) of ``names`` (default: every knob), for display."""
    import pandas as pd

    flat = cfg.to_flat()
    names = list(flat) if names is None else names
    return pd.DataFrame({"knob": names, "section": [KNOB_SECTION[n] for n in names],
                         "value": [flat[n] for n in names]}).set_index("knob")


def show_table(data: Any, caption: str | None = None, floatfmt: str = "{:.2f}") -> None:
    """Display rows (a DataFrame, a list of dicts, a dict of columns or a CSV/MD path) as a table.

    Returns nothing (so a notebook cell does not show the table twice). Outside IPython it prints.
    """
    import pandas as pd

    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise MissingFileError(f"{path} does not exist; run the notebook that writes it first")
        df = pd.read_csv(path) if path.suffix == ".csv" else None
        if df is None:
            text = path.read_text(encoding="utf-8")
            _display_markdown(text if caption is None else f"**{caption}**\n\n{text}")
            return None
    elif isinstance(data, pd.DataFrame):
        df = data
    else:
        df = pd.DataFrame(data)
    styled_caption = caption or ""
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is None:
            raise ImportError
        fmt = {c: _number_formatter(floatfmt) for c in df.columns if pd.api.types.is_float_dtype(df[c])}
        sty = df.style.format(fmt)
        float_levels = [i for i, lev in enumerate(getattr(df.index, "levels", [df.index]))
                        if pd.api.types.is_float_dtype(lev)]
        if float_levels:  # an index of floats (h = 0.3, 0.5) reads 0.3, not 0.300000
            sty = sty.format_index("{:g}", level=float_levels)
        if styled_caption:
            sty = sty.set_caption(styled_caption)
        display(sty)
    except ImportError:
        if styled_caption:
            print(styled_caption)
        print(df.to_string())
    return None


def _number_formatter(floatfmt: str):
    """``floatfmt`` without negative zeros: a value that rounds to 0 prints as 0.000, not -0.000."""

    def fmt(x):
        text = floatfmt.format(x)
        return text[1:] if text.startswith("-") and float(text) == 0 else text

    return fmt


def interactive_frontend() -> bool:
    """Whether figures go to a live Jupyter front end (sliders make sense) rather than a batch run.

    Batch runs and tests (``make test``, ``make reproduce``, the README's papermill recipe) set
    ``MPLBACKEND=Agg``; ``make lab`` does not, and its kernel draws with the inline backend.
    """
    try:
        import matplotlib
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    return get_ipython() is not None and "inline" in matplotlib.get_backend().lower()


def show_markdown(text: str) -> None:
    """Display markdown (a rendered table or a sentence computed from results).

    Text holding a table is wrapped in a block that scrolls sideways, so a table wider than the
    notebook (the comparison tables have 11 columns) scrolls instead of being cut off.
    """
    _display_markdown(text)


#: the block a Markdown table is shown in: it scrolls sideways when wider than the notebook
SCROLL_OPEN, SCROLL_CLOSE = '<div style="overflow-x: auto; max-width: 100%;">', "</div>"


def scrollable(text: str) -> str:
    """``text`` inside the sideways-scrolling block when it holds a Markdown table (blank lines keep
    the Markdown inside rendered); other text unchanged."""
    if not any(line.startswith("|") for line in text.splitlines()):
        return text
    return f"{SCROLL_OPEN}\n\n{text}\n\n{SCROLL_CLOSE}"


def _display_markdown(text: str) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is None:
            raise ImportError
        display(Markdown(scrollable(text)))
    except ImportError:
        print(text)


def show_figure(fig: Any, path: Path | None = None) -> None:
    """Save ``fig`` to ``path`` (folders created) when given, display it, and close it."""
    import matplotlib.pyplot as plt

    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight")
    try:
        from IPython import get_ipython
        from IPython.display import Image, display

        if get_ipython() is not None:
            # PNG bytes, not display(fig): under MPLBACKEND=Agg (Makefile, CI) the kernel has no
            # inline backend and a Figure would show as "<Figure ...>" text in executed notebooks.
            buf = io.BytesIO()
            fig.savefig(buf, format="png", bbox_inches="tight")
            display(Image(data=buf.getvalue()))
    except ImportError:  # pragma: no cover
        pass
    plt.close(fig)
    if path is not None:
        print(f"saved {_short(path)}")


def _short(path: Path) -> str:
    """``path`` relative to the repository root when it is inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def pipeline_timings(cfg: Config, root: Path | None = None) -> Any:
    """Per-notebook wall times of the last ``reproduce`` run of this profile, as a DataFrame.

    Reads ``runs/<profile>/pipeline_state.json`` (written by ``contextclip.pipeline``); an empty
    frame when the notebooks were run by hand.
    """
    import pandas as pd

    state_path = profile_paths(cfg, root).runs / "pipeline_state.json"
    if not state_path.exists():
        return pd.DataFrame(columns=["notebook", "seconds", "finished"])
    state = json.loads(state_path.read_text(encoding="utf-8"))
    rows = [{"notebook": name, "seconds": round(entry.get("seconds", float("nan")), 1),
             "finished": entry.get("finished", "")} for name, entry in state.get("notebooks", {}).items()]
    return pd.DataFrame(rows)


def image_grid(images: Any, titles: list[str] | None = None, ncols: int = 6, title: str | None = None,
               width: float = 2.2, wrap: int = 28) -> Any:
    """A Figure showing ``uint8 [N, 3, H, W]`` images (a tensor, an array or a list), captions below.

    Display glue for notebook 01 (training pairs, one example per class); the paper's figures
    live in ``contextclip.plots``.
    """
    import textwrap

    import matplotlib.pyplot as plt
    import numpy as np

    arrs = [np.asarray(im) for im in images]
    if not arrs:
        raise ValueError("image_grid: no images to show")
    n = len(arrs)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    extra = 0.45 if titles else 0.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, (width + extra * 1.6) * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (ax, im) in enumerate(zip(axes.ravel(), arrs)):
        if im.ndim == 3 and im.shape[0] in (1, 3):
            im = im.transpose(1, 2, 0)
        ax.imshow(im.squeeze(), cmap="gray" if im.ndim == 2 or im.shape[-1] == 1 else None,
                  interpolation="nearest")
        if titles:
            ax.set_title("\n".join(textwrap.wrap(str(titles[i]), wrap)[:3]), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def show_saved_figure(path: Path, width: int = 900) -> bool:
    """Display a saved PNG (a notebook showing saved results); returns False, saying so, when it is missing."""
    path = Path(path)
    if not path.is_file():
        print(f"{path} is missing: set recompute = True to draw it (into runs/<profile>/by_hand/figures/)")
        return False
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:  # pragma: no cover - IPython is a pinned requirement
        return True
    if get_ipython() is not None:
        display(Image(filename=str(path), width=width))
    return True


def figures_dir(cfg: Config, pipeline_run: bool = False) -> Path:
    """Where notebooks 00-02 save their figures: ``figures/<profile>/`` under ``make reproduce``,
    ``runs/<profile>/by_hand/figures/`` (git-ignored) when run by hand (``layout.outputs_for``)."""
    return outputs_for(cfg.profile, recompute=True, pipeline_run=pipeline_run).paths.figures
