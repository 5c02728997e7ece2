"""JupyterLab the kit's way: ``make lab`` runs ``python -m contextclip.lab``.

What it is: the one place that names the kit's Jupyter kernel (``contextclip``, shown as
"ContextCLIP (.venv)") and builds the JupyterLab command line:

- the Lab's root is the repository root, so ``notebooks/``, ``figures/``, ``results/``, ``docs/`` and
  the README are all in the file browser and a notebook's relative link (``../docs/decisions.md``)
  opens;
- it listens on 127.0.0.1 only, with token authentication on (Jupyter prints the URL with the token);
- new notebooks start on the kit's kernel;
- ``MPLBACKEND`` is removed from the Lab's environment, so the kernel uses matplotlib's inline
  backend and ``plt.show()`` displays (batch runs and tests set ``MPLBACKEND=Agg`` themselves).

``--install-kernel`` installs the kernelspec into the running Python's prefix (``make setup`` does it);
``reproduce``, nbval and the notebooks' metadata all name the same kernel, so a Jupyter or papermill
from another environment fails with "No such kernel named contextclip" instead of silently running
the notebooks with the wrong Python.

What it is not: it starts nothing else (no data preparation, no training).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from contextclip.config import REPO_ROOT

KERNEL_NAME = "contextclip"
KERNEL_DISPLAY_NAME = "ContextCLIP (.venv)"


def install_kernel(prefix: str | None = None) -> str:
    """Install the kit's kernelspec (this Python) into ``prefix`` (default: ``sys.prefix``); return its folder."""
    from ipykernel.kernelspec import install

    return install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME, prefix=prefix or sys.prefix)


def kernel_installed() -> bool:
    """Whether a Jupyter in this environment can start the kit's kernel."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        return False
    return True


def lab_argv(port: int | None = None, token: str | None = None, open_browser: bool = False) -> list[str]:
    """The ``jupyter lab`` command line of ``make lab`` (``port``/``token``: tests pass their own)."""
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={REPO_ROOT}", "--ServerApp.ip=127.0.0.1",
            f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}"]
    if not open_browser:
        argv.append("--no-browser")
    if port is not None:
        argv += [f"--ServerApp.port={int(port)}", "--ServerApp.port_retries=0"]
    if token is not None:
        if not token:
            raise ValueError("an empty token would switch authentication off; give a non-empty token")
        argv.append(f"--IdentityProvider.token={token}")
    if hasattr(os, "getuid") and os.getuid() == 0:
        argv.append("--allow-root")  # CI containers run as root
    return argv


def lab_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The Lab's environment: ``base`` (default ``os.environ``) without ``MPLBACKEND``."""
    env = dict(os.environ if base is None else base)
    env.pop("MPLBACKEND", None)
    return env


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contextclip.lab", description=__doc__.splitlines()[0])
    parser.add_argument("--install-kernel", action="store_true",
                        help=f"install the {KERNEL_NAME!r} kernelspec into this environment and exit")
    parser.add_argument("--port", type=int, default=None, help="port (default: Jupyter's, 8888 or the next free)")
    args = parser.parse_args(argv)
    if args.install_kernel:
        where = install_kernel()
        print(f"installed the Jupyter kernel {KERNEL_NAME!r} ({KERNEL_DISPLAY_NAME}) in {where}")
        return 0
    if not kernel_installed():
        print(f"error: the Jupyter kernel {KERNEL_NAME!r} is not installed in this environment; run `make setup` "
              f"(or `{sys.executable} -m contextclip.lab --install-kernel`)", file=sys.stderr)
        return 2
    cmd = lab_argv(port=args.port)
    print("starting JupyterLab at the repository root (the URL with the token follows):", " ".join(cmd[2:]))
    sys.stdout.flush()
    os.execve(cmd[0], cmd, lab_env())
    return 0  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main())
