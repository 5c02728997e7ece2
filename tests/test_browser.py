"""Notebooks 00 and 06 in a real JupyterLab, driven by headless Chromium through Playwright.

The Lab is started as ``make lab`` starts it (``contextclip.lab.lab_argv`` and ``lab_env``: the
repository root, 127.0.0.1, token on, the kit's kernel, no ``MPLBACKEND``) on a free port. The first
test opens ``notebooks/00_contextual_loss_explained.ipynb``, runs all cells and checks what a student
sees: the kernel is the kit's, no cell shows an error or a red stderr box, the equations are typeset
by MathJax, every figure is an image, the sliders are there, and a new scratch cell with
``plt.plot([0, 1]); plt.show()`` displays a figure. The second runs ``notebooks/06_retrieval.ipynb``
(on the smoke runs, trained here first when missing, as notebook 02 trains them) and uses its caption
box: typing a caption and pressing Enter, then clicking Search with another, each redraws the images.

Needs Debian's Chromium (``apt-get install -y chromium``; Playwright's own browser download is not
used) and the pinned ``playwright`` package; without them the test is skipped with that message.
On failure a screenshot, the page's HTML and the Lab's log are kept in ``tests/artifacts/browser/``
(git-ignored), and the caption box's screenshot (``caption_box.png``) after it passes. Test-only
Lab settings (in a temporary settings folder): autosave off, so the committed notebook is never
written, and every cell kept in the page (no windowed rendering).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

from contextclip.config import REPO_ROOT
from contextclip.lab import KERNEL_DISPLAY_NAME, lab_argv, lab_env

pytestmark = pytest.mark.slow

NOTEBOOK = "notebooks/00_contextual_loss_explained.ipynb"
RETRIEVAL_NOTEBOOK = "notebooks/06_retrieval.ipynb"
ARTIFACTS = REPO_ROOT / "tests" / "artifacts" / "browser"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook shown (a restored tab would add others)
INSTALL_HINT = ("install Debian's Chromium with `sudo apt-get install -y chromium` (and `make setup` for the "
                "pinned playwright package) to run the browser test; .ci/run does both")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings_dir() -> str:
    """User settings for this Lab only: no autosave (the repo's notebook stays stripped), all cells in the DOM."""
    root = Path(tempfile.mkdtemp(prefix="lab_settings_"))
    for plugin, values in {
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        pkg, name = plugin.rsplit("/", 1)
        (root / pkg).mkdir(parents=True, exist_ok=True)
        (root / pkg / f"{name}.jupyterlab-settings").write_text(json.dumps(values))
    return str(root)


@pytest.fixture(scope="module")
def lab():
    """A running JupyterLab, as ``make lab`` starts it; yields ``(base_url, token, log_path)``."""
    if _chromium() is None:
        pytest.skip(f"Chromium not found: {INSTALL_HINT}")
    pytest.importorskip("playwright.sync_api", reason=f"playwright is not installed: {INSTALL_HINT}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port, token = _free_port(), secrets.token_hex(16)
    env = lab_env()
    env.update(JUPYTERLAB_SETTINGS_DIR=_settings_dir(),
               JUPYTERLAB_WORKSPACES_DIR=tempfile.mkdtemp(prefix="lab_workspaces_"),
               JUPYTER_RUNTIME_DIR=tempfile.mkdtemp(prefix="lab_runtime_"),
               PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log_path = ARTIFACTS / "lab.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(lab_argv(port=port, token=token), cwd=REPO_ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"JupyterLab did not start on port {port}; its log: {log_path}\n"
                        + log_path.read_text()[-3000:])
        time.sleep(1)
    try:
        yield base, token, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _all_code_cells_ran(page) -> bool:
    prompts = _prompts(page)
    return bool(prompts) and all(p.startswith("[") and p[1:-2].strip().isdigit() for p in prompts)


def _kernels(base: str, token: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=10) as r:
        return json.loads(r.read())


def _wait_kernel_idle(base: str, token: str, log_path: Path, seconds: float = 180, known: frozenset = frozenset()) -> None:
    """Wait until the notebook's kernel has started and is idle (the REST API, not the page).

    ``known``: ids of kernels that were running before the notebook was opened (another notebook's).
    """
    deadline = time.time() + seconds
    while time.time() < deadline:
        kernels = [k for k in _kernels(base, token) if k.get("id") not in known]
        if kernels and all(k.get("execution_state") == "idle" for k in kernels):
            return
        time.sleep(1)
    pytest.fail(f"the kernel did not become idle in {seconds:.0f} s: {_kernels(base, token)}; Lab log tail:\n"
                + log_path.read_text()[-3000:])


def _prompts(page) -> list[str]:
    return [p.strip() for p in page.locator(f"{PANEL} .jp-CodeCell .jp-InputArea-prompt").all_inner_texts()]


def _cells_started(page, seconds: float) -> bool:
    """Whether some cell is queued, running or done ("[*]:" or "[n]:") within ``seconds``."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if any(p.startswith("[") and p[1:2] not in (" ", "]") for p in _prompts(page)):
            return True
        page.wait_for_timeout(500)
    return False


def _diagnosis(page, base: str, token: str, log_path: Path) -> str:
    """What a failed run looked like, for a CI log that keeps no artifacts: prompts, kernels, Lab log."""
    prompts = _prompts(page)
    counts = {p: prompts.count(p) for p in sorted(set(prompts))}
    try:
        kernels = [(k.get("name"), k.get("execution_state")) for k in _kernels(base, token)]
    except OSError as exc:
        kernels = [f"(kernels not readable: {exc})"]
    dialogs = page.locator(".jp-Dialog").all_inner_texts()
    tabs = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tabLabel").all_inner_texts()
    return (f"cell prompts {counts}; kernels {kernels}; open tabs {tabs}; dialogs {dialogs}; Lab log tail:\n"
            + log_path.read_text()[-4000:])


def _run_all(page, base: str, token: str, log_path: Path, seconds: float = 240, name: str = "notebook 00",
             known: frozenset = frozenset()) -> str:
    """Run > Run All Cells and wait until every code cell ran or one shows an error.

    Returns "" when done, else a diagnosis. The menu is clicked again (up to 3 times) when no cell
    was queued: a click can land while the notebook is still taking focus.
    """
    _wait_kernel_idle(base, token, log_path, known=known)
    for _ in range(3):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        if _cells_started(page, seconds=30):
            break
        page.keyboard.press("Escape")
    else:
        return "Run > Run All Cells queued no cell in 3 tries; " + _diagnosis(page, base, token, log_path)
    deadline = time.time() + seconds
    while not _all_code_cells_ran(page):
        if page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").count():
            return ""
        if time.time() > deadline:
            return (f"{name} did not finish in {seconds:.0f} s (papermill runs it in a minute at most); "
                    + _diagnosis(page, base, token, log_path))
        page.wait_for_timeout(1000)
    return ""


def _open_and_run_all(page, base: str, token: str, log_path: Path, notebook: str, seconds: float = 240) -> None:
    """Open ``notebook`` in the Lab on the kit's kernel, Run All, and check that every cell ran
    without an error or a red stderr box. A run that stalls is diagnosed (in the warnings summary,
    since a CI log keeps no artifacts) and tried once more on a reloaded page."""
    known = frozenset(k["id"] for k in _kernels(base, token))  # other notebooks' kernels
    page.goto(f"{base}/lab/tree/{notebook}?token={token}", timeout=120_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    # the kernel: the kit's, named in the notebook's metadata, and started
    kernel = page.locator(".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName").first
    kernel.wait_for(timeout=60_000)
    page.wait_for_function(
        "name => [...document.querySelectorAll('.jp-NotebookPanel-toolbar .jp-Toolbar-kernelName')]"
        ".some(e => e.textContent.includes(name))", arg=KERNEL_DISPLAY_NAME, timeout=120_000)
    name = Path(notebook).stem
    stalled = _run_all(page, base, token, log_path, seconds, name, known)
    if stalled:
        warnings.warn(f"first Run All of {name} stalled, retrying on a reloaded page: {stalled}", stacklevel=1)
        page.reload()
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
        stalled = _run_all(page, base, token, log_path, seconds, name, known)
        if stalled:
            pytest.fail(f"Run All of {name} stalled twice; {stalled}")
    page.wait_for_timeout(1000)  # outputs of the last cell
    errors = page.locator("[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, f"a cell of {name} shows an error:\n" + "\n".join(errors.all_inner_texts())[:3000]
    stderr = page.locator("[data-mime-type='application/vnd.jupyter.stderr']")
    assert stderr.count() == 0, (f"a cell of {name} shows stderr output (a red box to a student):\n"
                                 + "\n".join(stderr.all_inner_texts())[:3000])
    assert _all_code_cells_ran(page), f"some cells of {name} did not run"


def _keep_artifacts(page, request, log_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{request.node.name}.png"
    page.screenshot(path=str(shot), full_page=True)
    (ARTIFACTS / f"{request.node.name}.html").write_text(page.content())
    print(f"screenshot: {shot}; page: {shot.with_suffix('.html')}; Lab log: {log_path}")


def test_notebook_00_runs_in_jupyterlab(lab, request):
    from playwright.sync_api import sync_playwright

    base, token, log_path = lab
    before = _digest(REPO_ROOT / NOTEBOOK)
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="chromium_"), executable_path=_chromium(),
                                                    headless=True, args=CHROMIUM_FLAGS,
                                                    viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        try:
            _open_and_run_all(page, base, token, log_path, NOTEBOOK)

            # equations: typeset by MathJax, no raw TeX delimiters left in rendered markdown
            page.wait_for_function("document.querySelectorAll('.jp-MarkdownOutput mjx-container').length > 10",
                                   timeout=60_000)
            raw = page.locator(".jp-MarkdownOutput").all_inner_texts()
            assert not any("$$" in t or "\\mathcal" in t for t in raw), "TeX left unrendered in a markdown cell"

            # figures: images that decoded, and no "<Figure size ...>" text in their place
            images = page.locator(".jp-OutputArea-output img")
            assert images.count() >= 5, f"expected the notebook's figures as images, found {images.count()}"
            broken = page.evaluate("[...document.querySelectorAll('.jp-OutputArea-output img')]"
                                   ".filter(i => !(i.complete && i.naturalWidth > 0)).length")
            assert broken == 0, f"{broken} figure images did not load"
            outputs = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
            assert "<Figure size" not in outputs, "a figure was printed as text instead of drawn"

            # the interactive explorer: three sliders (h, alpha, noise)
            assert page.locator(".widget-slider").count() >= 3, "the sliders of section 8 are not displayed"
            # ... and moving one (alpha, by keyboard) redraws the figure
            widget_img = ".jupyter-widgets-output-area img, .widget-output img"
            page.locator(widget_img).first.wait_for(timeout=60_000)
            before_src = page.locator(widget_img).first.get_attribute("src")
            page.locator(".widget-slider .noUi-handle").nth(1).focus()
            for _ in range(3):
                page.keyboard.press("ArrowRight")
            page.wait_for_function(
                "([sel, src]) => { const i = document.querySelector(sel); return i && i.src !== src; }",
                arg=[widget_img, before_src], timeout=60_000)

            # a student's own figure: a new cell at the end with plt.show()
            n_img = images.count()
            page.locator(".jp-Notebook .jp-Cell").last.click()
            page.keyboard.press("Escape")
            page.keyboard.press("b")  # insert a cell below, command mode
            page.keyboard.press("Enter")  # edit it
            page.keyboard.insert_text("import matplotlib.pyplot as plt\nplt.plot([0, 1])\nplt.show()")
            page.keyboard.press("Control+Enter")  # run in place (Shift+Enter would add a cell below)
            page.wait_for_function(f"document.querySelectorAll('.jp-OutputArea-output img').length > {n_img}",
                                   timeout=60_000)
            last_code = page.locator(".jp-CodeCell").last
            assert last_code.locator(".jp-OutputArea-output img").count() == 1, "plt.show() displayed no figure"
        except BaseException:
            _keep_artifacts(page, request, log_path)
            raise
        finally:
            ctx.close()
    assert _digest(REPO_ROOT / NOTEBOOK) == before, "the Lab wrote the committed notebook (autosave must be off)"


@pytest.fixture(scope="module")
def smoke_runs():
    """The smoke runs notebook 06 reads, trained as notebook 02 trains them when they are missing."""
    from contextclip.config import load_config
    from contextclip.layout import paths_for
    from contextclip.train import fit

    cfg = load_config("smoke")
    paths = paths_for("smoke")
    for method in ("clip", "contextclip"):
        run = paths.run_dir(method, cfg.train.seeds[0])
        if not (run / "summary.json").exists():
            fit(cfg.for_method(method), method, cfg.train.seeds[0], run, progress=False)
    return paths


def test_retrieval_caption_box_in_jupyterlab(lab, smoke_runs, request):
    """Notebook 06 runs in the Lab; its caption box redraws the images for a typed caption."""
    from playwright.sync_api import sync_playwright

    base, token, log_path = lab
    before = _digest(REPO_ROOT / RETRIEVAL_NOTEBOOK)
    image = "img.widget-image"
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="chromium_"), executable_path=_chromium(),
                                                    headless=True, args=CHROMIUM_FLAGS,
                                                    viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        try:
            _open_and_run_all(page, base, token, log_path, RETRIEVAL_NOTEBOOK, seconds=420)
            # the box: a text field with the example caption, a Search button, and its figure drawn
            box_input = page.locator(".widget-text input").first
            box_input.wait_for(timeout=60_000)
            assert box_input.input_value() == "an italic number three"
            page.locator(image).first.wait_for(timeout=60_000)
            page.wait_for_function("sel => { const i = document.querySelector(sel); return i && i.naturalWidth > 0; }",
                                   arg=image, timeout=60_000)
            first_src = page.locator(image).first.get_attribute("src")
            # type a caption and press Enter: the status names it and the figure is redrawn
            box_input.scroll_into_view_if_needed()
            box_input.fill("a small red circle")
            box_input.press("Enter")
            page.wait_for_function(
                "([sel, src]) => { const i = document.querySelector(sel); return i && i.src !== src && i.naturalWidth > 0; }",
                arg=[image, first_src], timeout=60_000)
            status = page.locator(".widget-html").filter(has_text="a small red circle")
            status.first.wait_for(timeout=30_000)
            assert "your own words" in status.first.inner_text()
            # a caption of the set, with the button: its correct images are counted
            second_src = page.locator(image).first.get_attribute("src")
            box_input.fill("the number 7")
            page.locator(".widget-button", has_text="Search").first.click()
            page.wait_for_function(
                "([sel, src]) => { const i = document.querySelector(sel); return i && i.src !== src && i.naturalWidth > 0; }",
                arg=[image, second_src], timeout=60_000)
            status = page.locator(".widget-html").filter(has_text="the number 7")
            status.first.wait_for(timeout=30_000)
            assert "correct in top" in status.first.inner_text()
            errors = page.locator("[data-mime-type='application/vnd.jupyter.error']")
            assert errors.count() == 0, "the caption box raised:\n" + "\n".join(errors.all_inner_texts())[:3000]
            ARTIFACTS.mkdir(parents=True, exist_ok=True)  # what a student sees, for a look by eye
            page.locator(".widget-vbox", has=page.locator(image)).last.screenshot(path=str(ARTIFACTS / "caption_box.png"))
        except BaseException:
            _keep_artifacts(page, request, log_path)
            raise
        finally:
            ctx.close()
    assert _digest(REPO_ROOT / RETRIEVAL_NOTEBOOK) == before, "the Lab wrote the committed notebook (autosave must be off)"
