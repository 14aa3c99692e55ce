"""``python -m semanticcache``: the ``semcache`` command."""

from semanticcache._cli import main

raise SystemExit(main())
