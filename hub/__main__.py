"""Entry point of `python -m diffcd_hub`."""

from diffcd_hub.cli import main

raise SystemExit(main())
