"""Values derived from rows, cached per object: reused while it lives, read-only, dropped with it."""
import numpy as np
import pandas as pd
import pytest

from domains._memo import by_identity


def test_computed_once_per_object_and_read_only():
    calls = []

    @by_identity
    def doubled(frame):
        calls.append(1)
        return {"x": frame["x"].to_numpy() * 2}

    frame = pd.DataFrame({"x": [1.0, 2.0]})
    first, again = doubled(frame), doubled(frame)
    assert first is again and len(calls) == 1
    with pytest.raises(ValueError, match="read-only"):
        first["x"][0] = 5.0
    other = pd.DataFrame({"x": [1.0, 2.0]})  # equal content, another object: computed for it
    doubled(other)
    assert len(calls) == 2


def test_a_new_object_at_a_dead_ones_address_is_not_served_its_value():
    @by_identity
    def total(array):
        return float(array.sum())

    values, ids = [], set()
    for n in range(50):  # ids are reused as arrays come and go: an array is freed the moment its last name goes
        array = np.full(3, float(n))
        ids.add(id(array))
        values.append(total(array))
        del array  # no gc.collect(): arrays hold no cycles, and a full collection of the suite's heap takes seconds
    assert len(ids) < 50, "no address was reused: the test did not exercise its case"
    assert values == [3.0 * n for n in range(50)]
