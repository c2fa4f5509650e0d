"""``python -m dagrun`` is the ``dagrun`` command."""

from dagrun.cli import main

raise SystemExit(main())
