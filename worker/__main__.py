"""``python -m worker`` is the ``tool-worker`` command."""

from worker.cli import main

__all__: list[str] = []

raise SystemExit(main())
