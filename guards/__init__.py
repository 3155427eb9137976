"""Guards against metric gaming: pure functions of evidence returning GuardResult."""
from guards._result import GUARD_NAMES, GuardResult

__all__ = ["GUARD_NAMES", "GuardResult"]
