"""The user-facing errors (defined in the leaf module domains.errors, so lower layers can raise them)."""
from __future__ import annotations

from domains.errors import IntegrityError, RatchetError, WorkspaceBusy

__all__ = ["IntegrityError", "RatchetError", "WorkspaceBusy"]
