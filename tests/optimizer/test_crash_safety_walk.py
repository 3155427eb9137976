"""The second half of test_crash_safety.py's walk of the experiment's kill points (split so two workers share
it): a real SIGKILL of `ratchet try --keep` at each point, then the next command recovers."""
from __future__ import annotations

import pytest

from tests.optimizer.test_crash_safety import EXPERIMENT_POINTS, SPLIT, baselined, walk  # noqa: F401 (a fixture)


def test_the_two_halves_walk_every_point():
    assert EXPERIMENT_POINTS[:SPLIT] + EXPERIMENT_POINTS[SPLIT:] == EXPERIMENT_POINTS


@pytest.mark.parametrize("point", EXPERIMENT_POINTS[SPLIT:])
def test_a_kill_at_each_point_of_an_experiment_is_recovered_by_the_next_command(baselined, tmp_path, monkeypatch,
                                                                                point):
    walk(baselined, tmp_path, monkeypatch, point)
