"""User-facing errors: one clear line (what, where, what to do), never a traceback."""
from __future__ import annotations


class RatchetError(Exception):
    """A mistake the user can fix; the CLI prints it as one line and exits 2."""

    exit_code = 2


class IntegrityError(RatchetError):
    """The holdout, its seal, the ledger or the scorer does not verify."""

    exit_code = 2
