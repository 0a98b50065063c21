"""``python -m numformer``: the ``numformer`` command."""

from numformer.cli import main

raise SystemExit(main())
