"""ratchet's processes allocate Arrow memory from the system allocator (mimalloc kept ~1 GiB of freed pages after
a 10M-row read), in processes it starts too, unless the user chose a pool."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = ("import {first}; import optimizer, pyarrow, subprocess, sys; print(pyarrow.default_memory_pool().backend_name);"
         "print(subprocess.run([sys.executable, '-c', 'import pyarrow; print(pyarrow.default_memory_pool().backend_name)'],"
         " capture_output=True, text=True, check=True).stdout.strip())")


@pytest.mark.parametrize("first", ["os", "pyarrow"])  # pyarrow loaded before optimizer: the pool is switched
def test_optimizer_picks_the_system_pool_for_itself_and_its_children(first: str):
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    assert out == ["system", "system"]


def test_a_pool_the_user_chose_is_kept():
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}  # Arrow's own default in its wheels
    out = subprocess.run([sys.executable, "-c", PROBE.format(first="os")], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    assert out == ["mimalloc", "mimalloc"]
