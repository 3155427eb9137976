"""ratchet: the optimization loop that cannot be fooled by its own search."""
import os as _os
import sys as _sys

__version__ = "0.2.0"  # also the package version (pyproject.toml reads it)

# Arrow's default allocator (mimalloc) keeps the pages it frees: after reading a 10M-row Parquet file a process
# held about 1 GiB more than its data, and every later step peaked that much higher. The system allocator gives
# large blocks back and reads and writes Parquet as fast (BENCHMARKS.md, "Memory at 10M rows"). Set before
# pyarrow loads, so child processes (sandbox server, recorder, Dask workers) inherit it; a value the user set
# is kept.
if "ARROW_DEFAULT_MEMORY_POOL" not in _os.environ:
    _os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    if "pyarrow" in _sys.modules:  # loaded by the caller first: switch the pool for what comes next
        import pyarrow as _pa

        _pa.set_memory_pool(_pa.system_memory_pool())
