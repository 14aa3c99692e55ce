"""``python -m semanticcache``: the ``semcache`` command."""

from semanticcache.cli import main

raise SystemExit(main())
