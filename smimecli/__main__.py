"""``python -m smimecli``."""

from smimecli.cli.app import main

raise SystemExit(main())
