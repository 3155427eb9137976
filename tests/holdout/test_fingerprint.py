"""A sealed holdout's fingerprint: overlap by row content or id is found from the file alone, and a changed or
missing file is refused by name."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains.errors import IntegrityError
from holdout import fingerprint


def _frame(start: int, n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    return pd.DataFrame({"id": np.arange(start, start + n), "amount": rng.normal(size=n).round(6),
                         "label": rng.integers(0, 2, n), "when": pd.date_range("2024-01-01", periods=n, freq="h")})


def test_overlap_by_content_and_by_id_is_found_from_the_file(tmp_path):
    sealed = _frame(0)
    bound = fingerprint.write(tmp_path, sealed, id_col="id", manifest_sha256="ab" * 32)
    assert bound["rows"] == 50 and bound["columns"] == ["amount", "label", "when"] and len(bound["ids_sha256"]) == 64
    found = fingerprint.read(tmp_path, bound, "ledger entry 1")
    same_rows_new_ids = sealed.assign(id=sealed["id"] + 1000)[["when", "id", "label", "amount"]]  # another order
    assert fingerprint.overlap(same_rows_new_ids, found, "id") == (50, 0)
    assert fingerprint.overlap(_frame(25).assign(amount=7.0), found, "id") == (0, 25)
    assert fingerprint.overlap(_frame(500), found, "id") == (0, 0)
    with pytest.raises(IntegrityError, match="lack column"):
        fingerprint.overlap(sealed.drop(columns="label"), found, "id")


def test_a_missing_or_changed_fingerprint_is_refused_by_name(tmp_path):
    bound = fingerprint.write(tmp_path, _frame(0), id_col="id", manifest_sha256="cd" * 32)
    path = tmp_path / bound["file"]
    path.chmod(0o644)
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(IntegrityError, match=rf"{bound['file']}: sha256 .* != sealed .*ledger entry 3"):
        fingerprint.read(tmp_path, bound, "ledger entry 3")
    path.unlink()
    assert fingerprint.problem(tmp_path, bound) == f"{bound['file']} is missing"
    assert "not one ratchet wrote" in fingerprint.problem(tmp_path, {"file": 3})
