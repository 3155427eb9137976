"""Guards against metric gaming: pure functions of evidence returning GuardResult."""
from guards._result import GuardName, GuardResult
from guards.verdict import Verdict, decide

# The guard functions live in their modules (guards.static, guards.significance, ...): importing
# them here would make every command pay for scipy and scikit-learn.
__all__ = ["GuardName", "GuardResult", "Verdict", "decide"]
