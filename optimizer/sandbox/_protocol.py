"""Names shared by the parent, the fork server and the child: exit codes, file names, vocabularies."""
from __future__ import annotations

EXIT_OK = 0
EXIT_CRASH = 70  # the policy raised or returned something unusable; meta.json says which
EXIT_MEMORY = 71  # MemoryError (or a native allocation failure) inside the policy
EXIT_UNRECORDED = 72  # the audit record channel was tampered with (see _audit)
EXIT_SETUP = 73  # containment could not be set up; the policy never ran

POLICY_FILE = "policy.py"
TRAIN_FILE = "train.pkl"  # row files are pickled by the parent, loaded by the child (see _rowfiles)
MODEL_FILE = "model.pkl"
META_FILE = "meta.json"


# A worker's rows, pickled by the parent and loaded by the worker (never the reverse); with the earlier events they
# may read (domains.history), when the request says so, as one (rows, history) pair: one file to write and read.
WORKER_ROWS = "rows.pkl"


def rows_file(index: int) -> str:
    return f"rows-{index}.pkl"  # by position: row-set names never become file names


def history_file(index: int) -> str:
    return f"history-{index}.pkl"  # the earlier events row set `index` may read (domains.history)


def out_file(index: int) -> str:
    return f"out-{index}.npy"


LOG_CAP = 64 * 1024  # bytes of fit output kept (the tail)
MAX_VIOLATIONS = 50
MAX_CONSTANT_CHARS = 1000

# Decide-phase facts are a closed vocabulary: the parent formats every message itself, so nothing
# the candidate wrote while holdout rows were present becomes free text in a result.
DECIDE_STAGES = ("load_policy", "load_model", "read_rows", "decide", "convert", "write")
DECIDE_REASONS = ("missing", "exception", "type", "shape", "length", "dtype", "memory")
TYPE_NAMES = frozenset({
    "NoneType", "bool", "int", "float", "complex", "str", "bytes", "dict", "set", "frozenset",
    "list", "tuple", "generator", "map", "range", "ndarray", "Series", "DataFrame", "Index",
    "Categorical", "ExtensionArray", "ArrowExtensionArray", "StringArray", "Tensor", "other",
})
