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

# Registered model versions are pickles of `PolicyModel` under the module path it had when they were registered
# (MLflow's pyfunc `python_model.pkl`). Those paths resolve to where the class lives now, so `mlflow models serve`
# and `mlflow.pyfunc.load_model` still load every version. Only these two names: new code imports the real path.
_PICKLED_PATHS = {"optimizer.registry": "optimizer.tracking.registry_model",
                  "optimizer.registry_model": "optimizer.tracking.registry_model"}


class _PickledPath:
    """A meta path finder and loader that answers an old pickled module path with the module it moved to."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in _PICKLED_PATHS:
            return None
        import importlib.util

        return importlib.util.spec_from_loader(name, _PickledPath)

    @staticmethod
    def create_module(spec):
        import importlib

        return importlib.import_module(_PICKLED_PATHS[spec.name])

    @staticmethod
    def exec_module(module):
        pass


_sys.meta_path.append(_PickledPath)
