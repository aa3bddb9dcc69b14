"""``python -m perceptcoh``: see :mod:`perceptcoh.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
