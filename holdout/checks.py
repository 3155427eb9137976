"""One audit check's answer, and the four words a check ends in."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CheckStatus(StrEnum):
    """How a check ended (shown as its text)."""

    PASS = "pass"
    FAIL = "fail"
    NOT_CHECKED = "not checked"  # not made here, by design (hmac without RATCHET_SEAL_KEY): fails nothing
    NOT_VERIFIED = "not verified"  # could not be made (MLflow unreachable or unreadable, a store busy)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    checked: bool = True  # False: the check was not made here; it fails nothing
    verified: bool = True  # False: the check could not be made (see unverified)

    @property
    def status(self) -> CheckStatus:
        if not self.checked:
            return CheckStatus.NOT_CHECKED
        if self.passed:
            return CheckStatus.PASS
        return CheckStatus.FAIL if self.verified else CheckStatus.NOT_VERIFIED


def unverified(name: str, why: str) -> Check:
    """A check that could not be made, saying why (its detail reads "not verified: why")."""
    return Check(name, False, f"not verified: {why}", verified=False)
