"""The `ratchet` command line: one module per command group, each adding its commands to the shared app
(`optimizer.cli.app`, a leaf). Importing this package registers every command; `main` is the entry point.

- workspace: init, run, try, reseal, config, demo
- show, report: what an experiment or a run did (show, history, report)
- audit: audit, repair, sync
- shadow: events and shadow trials; promote: promote, rollback, models; serve: serve
- upkeep: upgrade and housekeeping; progress: the live display of a run; demo: the job `ratchet demo` runs
"""
from __future__ import annotations

from optimizer.cli import audit, promote, report, serve, shadow, show, upkeep, workspace  # noqa: F401 (registers)
from optimizer.cli.app import app, err, fail, main, out

__all__ = ["app", "err", "fail", "main", "out"]
