"""``python -m demo ...``: the demo world's commands, from a clone (the demo is not installed)."""

from demo.cli import main

raise SystemExit(main())
