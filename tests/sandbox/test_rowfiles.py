"""Row sets written once per sandbox and linked into each phase: fewer writes, never a changed file reused."""
from __future__ import annotations

import gc
import hashlib
import os

import numpy as np
import pandas as pd
import pytest

import optimizer.sandbox._rowfiles as rowfiles
from optimizer.sandbox import Sandbox
from optimizer.sandbox._rowfiles import RowFiles

TAMPER = """
import os
import numpy as np

def fit(train):
    return None

def decide(model, rows):
    for name in os.listdir("."):
        if name.startswith("rows"):
            try:
                os.chmod(name, 0o666)
                with open(name, "r+b") as f:
                    f.write(b"garbage")
            except OSError:
                pass
    return rows["x"].to_numpy() * 2.0
"""


def _counting(folder, monkeypatch) -> tuple[RowFiles, list]:
    written = []
    real = rowfiles.write_rows

    def write(frame, path):
        written.append(path)
        real(frame, path)

    monkeypatch.setattr(rowfiles, "write_rows", write)
    return RowFiles(folder, link=True), written


def test_a_frame_is_written_once_and_linked_into_each_phase(tmp_path, monkeypatch):
    files, written = _counting(tmp_path / "rows", monkeypatch)
    frame = pd.DataFrame({"x": np.arange(10.0)})
    for phase in range(3):
        work = tmp_path / f"w{phase}"
        work.mkdir()
        taken = files.place({"rows_0.pkl": frame}, work)
        pd.testing.assert_frame_equal(pd.read_pickle(work / "rows_0.pkl"), frame)
        files.check(taken)
    assert len(written) == 1 and oct(written[0].stat().st_mode & 0o777) == "0o444"


def test_a_file_changed_through_its_link_is_dropped_and_written_afresh(tmp_path, monkeypatch):
    files, written = _counting(tmp_path / "rows", monkeypatch)
    frame = pd.DataFrame({"x": np.arange(10.0)})
    work = tmp_path / "w1"
    work.mkdir()
    taken = files.snapshot([files.link(frame, work / "rows_0.pkl")])
    os.chmod(work / "rows_0.pkl", 0o644)  # what a child of the same user could do
    with open(work / "rows_0.pkl", "r+b") as f:
        f.write(b"\x80\x05")  # same bytes, same size: only the inode's times say so
    files.check(taken)
    assert not written[0].exists()
    again = tmp_path / "w2"
    again.mkdir()
    files.link(frame, again / "rows_0.pkl")
    assert len(written) == 2
    pd.testing.assert_frame_equal(pd.read_pickle(again / "rows_0.pkl"), frame)


def test_files_of_frames_that_are_gone_are_removed(tmp_path, monkeypatch):
    files, written = _counting(tmp_path / "rows", monkeypatch)
    work = tmp_path / "w"
    work.mkdir()
    frame = pd.DataFrame({"x": np.arange(5.0)})
    files.link(frame, work / "a.pkl")
    del frame
    gc.collect()
    files.link(pd.DataFrame({"x": np.arange(3.0)}), work / "b.pkl")
    assert not written[0].exists() and written[1].exists()


def test_a_child_cannot_change_the_rows_later_phases_read():
    """Children run as another user: the linked file is not theirs to chmod or write. Every decide sees the rows."""
    with Sandbox(preload=("numpy", "pandas", "pyarrow")) as box:
        if not box._rows.linking:
            pytest.skip("children run as this user here (no uid-drop): rows are written for each phase")
        fitted = box.fit(TAMPER, pd.DataFrame({"x": [1.0], "y": [0]}), budget_s=30)
        assert fitted.status == "ok", fitted.error
        rows = {"dev": pd.DataFrame({"x": np.arange(50.0)})}
        first = box.decide(TAMPER, fitted.model, rows, budget_s=30)
        kept = list((box._base / "rows").iterdir())
        digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in kept}
        second = box.decide(TAMPER, fitted.model, rows, budget_s=30)
        assert first.status == second.status == "ok", (first.error, second.error)
        np.testing.assert_array_equal(second.decisions["dev"], np.arange(50.0) * 2)
        assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in kept} == digests  # unchanged, still used


DTYPES = """
def fit(train):
    print(sorted((c, str(t)) for c, t in train.dtypes.items()), list(train.index[:3]))
    return None

def decide(model, rows):
    return rows["x"].to_numpy() * 0.0
"""


def test_a_phase_sees_the_parents_frame_dtypes_and_index_included():
    """Rows travel pickled: categories, nullable strings, small ints, times and a non-range index arrive as they left."""
    frame = pd.DataFrame({"x": np.arange(4.0), "n": np.arange(4, dtype="int8"),
                          "c": pd.Categorical(["a", "b", "a", "c"]), "s": pd.array(["p", None, "q", "r"], dtype="string"),
                          "t": pd.date_range("2026-01-01", periods=4, freq="h")}, index=[7, 3, 9, 1])
    with Sandbox(preload=("numpy", "pandas", "pyarrow")) as box:
        fitted = box.fit(DTYPES, frame, budget_s=30)
    assert fitted.status == "ok", fitted.error
    expected = sorted((c, str(t)) for c, t in frame.dtypes.items())
    assert f"{expected} [7, 3, 9]" in fitted.log
