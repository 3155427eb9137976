"""The errors every layer may raise: one clear line (what, where, what to do), never a traceback.

A leaf module (it imports nothing of the project), so domains, holdout and guards can raise them without
reaching up into the optimizer; the CLI maps each class to its exit code.
"""
from __future__ import annotations


class RatchetError(Exception):
    """A mistake the user can fix; the CLI prints it as one line."""


class IntegrityError(RatchetError):
    """The holdout, its seal, the ledger or the scorer does not verify."""


class WorkspaceBusy(RatchetError):
    """Another process holds the workspace's runner lock (one command at a time writes a workspace)."""
