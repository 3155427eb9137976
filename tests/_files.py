"""Helpers for importer tests: a person's file on disk, and the one-line refusal an importer gives for it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from optimizer.base.errors import RatchetError


def write_file(tmp_path: Path, user: pd.DataFrame, name: str) -> Path:
    """`user` as a CSV or Parquet file named `name` (by its extension)."""
    path = tmp_path / name
    user.to_csv(path, index=False) if name.endswith(".csv") else user.to_parquet(path)
    return path


def refusal_of(load: Callable, path: Path, mapping: dict) -> str:
    """The importer's refusal of `path`: one line that starts with the file's name."""
    with pytest.raises(RatchetError) as info:
        load(path, mapping)
    message = str(info.value)
    assert message.startswith(f"{path.name}: ") and "\n" not in message
    return message
