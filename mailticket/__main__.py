"""Allow ``python -m mailticket`` as well as the ``mailticket`` console script."""

from mailticket.cli import main

raise SystemExit(main())
