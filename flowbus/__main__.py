"""``python -m flowbus``: the command line."""

from flowbus.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
