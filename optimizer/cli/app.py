"""The shared command-line application: the typer app, the consoles, how an error becomes one line and an exit
code, and `main` (a storage failure becomes one line). A leaf: command modules import it, it imports none of them."""
from __future__ import annotations

import errno
import sys

import typer
from rich.console import Console

from optimizer.base.errors import IntegrityError, RatchetError, WorkspaceBusy
from optimizer.cli.progress import err

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="ratchet: an optimization loop for business systems that cannot be fooled by its own search.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)


def _version(shown: bool) -> None:
    if shown:
        from optimizer import __version__

        out.print(f"ratchet {__version__}", markup=False)
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the installed ratchet version and exit.")) -> None:
    """ratchet: an optimization loop for business systems that cannot be fooled by its own search."""


# Exit codes by error class, most specific first: 1 is kept for "checked, and it failed" (a rejected candidate,
# a failed audit), so a usage or integrity problem is never mistaken for a verdict.
EXIT_CODES: tuple[tuple[type[RatchetError], int], ...] = ((WorkspaceBusy, 75), (IntegrityError, 2), (RatchetError, 2))


def fail(exc: RatchetError) -> None:
    err.print(f"error: {exc}", markup=False)
    raise typer.Exit(next(code for cls, code in EXIT_CODES if isinstance(exc, cls)))


STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exhausted",
                  errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}


def storage_problem(exc: BaseException) -> str | None:
    """One line for a full, read-only or forbidden file system, from an OSError or DuckDB's own error; else None."""
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{STORAGE_ERRNOS[exc.errno]}"
    text = " ".join(str(exc).split())
    if type(exc).__module__.startswith(("duckdb", "_duckdb")):
        for words, what in (("No space left", "no space left on the device"),
                            ("Read-only file system", "the file system is read-only")):
            if words in text:
                return f"{what} ({text[:200]})"
    return None


def main() -> None:
    """The `ratchet` entry point (optimizer.cli.main, with every command module registered)."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - only storage failures become one line; anything else is a bug
        problem = storage_problem(exc)
        if problem is None:
            raise
        err.print(f"error: {problem}. Free space or make it writable, then run the command again: an "
                  "interrupted keep is repaired on the next run, and `ratchet audit` checks the rest.", markup=False)
        sys.exit(2)
