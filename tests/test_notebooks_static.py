"""The numbered notebooks as files: stripped, a markdown cell first, a tagged and commented
parameters cell of literals followed by the config check, no def/class outside 00, and the
parameter names are config knobs (so the pipeline can inject them). Reads JSON only; runs nothing.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import nbformat
import pytest

from contextclip.config import KNOB_SECTION, load_config
from contextclip.lab import KERNEL_NAME
from contextclip.notebook_utils import NOTEBOOK_PARAMETERS
from contextclip.pipeline import declared_parameters, list_notebooks

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = [
    "00_contextual_loss_explained", "01_data", "02_train", "03_zero_shot",
    "04_fine_tune", "05_tsne", "06_retrieval", "07_report", "08_sensitivity", "09_pretrained_regime",
]


def _load(name):
    path = NB_DIR / f"{name}.ipynb"
    if not path.exists():
        pytest.fail(f"{path} is missing")
    return nbformat.read(path, as_version=4)


def test_the_ten_notebooks_are_there_in_order():
    assert [p.stem for p in list_notebooks(NB_DIR)] == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_is_stripped_and_well_formed(name):
    nb = _load(name)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL_NAME, f"kernel must be the kit's {KERNEL_NAME!r}"
    assert "papermill" not in nb.metadata, "papermill metadata left in the committed notebook"
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            assert c.outputs == [], f"{name} cell {i} has outputs; strip them (make notebooks)"
            assert c.execution_count is None, f"{name} cell {i} has an execution count"

    first = nb.cells[0]
    assert first.cell_type == "markdown", f"{name}: the first cell must be markdown"
    for word in ("Purpose", "Inputs", "Outputs", "Runtime"):
        assert word in first.source, f"{name}: the first cell must say its {word}"

    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: exactly one cell must be tagged 'parameters', found {tagged}"
    i = tagged[0]
    assert nb.cells[i].cell_type == "code"
    assert all(c.cell_type == "markdown" for c in nb.cells[:i]), f"{name}: only markdown before the parameters"
    src = nb.cells[i].source

    # every assignment line carries a comment
    comments = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(src).readline)
                if tok.type == tokenize.COMMENT}
    for node in ast.parse(src).body:
        assert node.lineno in comments, f"{name}: parameter on line {node.lineno} has no comment"

    declared = declared_parameters(nb, name)  # literals only, else PipelineError
    # papermill parses the same names (else it warns "unknown parameter" on injection and
    # `papermill --help-notebook` is wrong; an apostrophe or "=" in a comment breaks its parser)
    import papermill

    assert sorted(papermill.inspect_notebook(str(NB_DIR / f"{name}.ipynb"))) == sorted(declared), (
        f"{name}: papermill cannot parse every parameter line; avoid ' and = in the comments"
    )
    assert declared.get("profile") == "smoke", f"{name}: the default profile must be smoke"
    others = sorted(set(declared) - {"profile"})
    allowed = set(KNOB_SECTION) | set(NOTEBOOK_PARAMETERS)
    assert set(others) <= allowed, f"{name}: parameters {set(others) - allowed} are neither config knobs nor notebook-only"
    # the defaults are valid for the config (None = take the profile's value)
    load_config("smoke", {k: v for k, v in declared.items() if k in KNOB_SECTION and v is not None})

    # the next code cell validates the parameters through the config
    nxt = next(c for c in nb.cells[i + 1:] if c.cell_type == "code")
    assert "setup_notebook(profile" in nxt.source, f"{name}: the cell after the parameters must call setup_notebook"
    for k in others:
        assert f"{k}={k}" in nxt.source, f"{name}: parameter {k!r} is not passed to setup_notebook"


@pytest.mark.parametrize("name", EXPECTED[1:])
def test_no_function_or_class_definitions_outside_00(name):
    nb = _load(name)
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(c.source)):
            assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)), (
                f"{name} cell {i} defines {node.name!r}: move it into contextclip/"
            )



@pytest.mark.parametrize("name", [p.stem for p in list_notebooks(NB_DIR)])
def test_notebook_ends_with_exercises_and_has_worked_solutions(name):
    """Every numbered notebook is a lesson: 2-4 exercises at the end, solutions in notebooks/solutions/."""
    nb = _load(name)
    md = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Exercises" in c.source]
    assert md, f"{name}: no '## Exercises' section"
    assert all(c.cell_type == "markdown" for c in nb.cells[md[-1]:]), f"{name}: the exercises must come last"
    text = nb.cells[md[-1]].source
    items = [line for line in text.splitlines() if line[:3] in {f"{k}. " for k in range(1, 10)}]
    assert 2 <= len(items) <= 4, f"{name}: {len(items)} exercises; 2-4 expected"
    solution = NB_DIR / "solutions" / f"{name}_solutions.ipynb"
    assert f"notebooks/solutions/{solution.name}" in text, f"{name}: the exercises must name {solution.name}"
    sol = nbformat.read(solution, as_version=4)
    assert sol.metadata["kernelspec"]["name"] == KERNEL_NAME
    assert all(c.outputs == [] for c in sol.cells if c.cell_type == "code"), f"{solution.name}: strip outputs"
    said = " ".join(c.source for c in sol.cells if c.cell_type == "markdown")
    assert said.count("What you should have seen") + said.count("*What you should have seen") >= len(items) - 1, (
        f"{solution.name}: each answer says what the student should have seen")
