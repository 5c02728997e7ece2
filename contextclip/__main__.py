"""``python -m contextclip ...``: the same commands as the ``contextclip`` console script."""

from contextclip.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
