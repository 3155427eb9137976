"""Support: an off-policy estimate resting on a few heavy weights or rarely logged actions is refused."""
from __future__ import annotations

import numpy as np
import pytest

from domains.pricing import ope
from guards import GuardName
from guards.support import check_support

LIMITS = {"min_ess_share": 0.05, "min_supported_share": 0.9, "min_logged_share": 0.04}


def test_well_supported_estimate_passes():
    result = check_support({"ess_share": 0.25, "supported_share": 1.0, "match_share": 0.3}, **LIMITS)
    assert result.passed and result.name is GuardName.SUPPORT
    assert result.figures["ess_share"] == 0.25


@pytest.mark.parametrize("ess, supported, needle", [
    (0.02, 1.0, "effective sample size is 2.0%"),
    (0.3, 0.85, "only 85.0% of decisions"),
    (float("nan"), 1.0, "effective sample size"),
])
def test_thin_support_fails_naming_the_reason(ess, supported, needle):
    result = check_support({"ess_share": ess, "supported_share": supported}, **LIMITS)
    assert not result.passed and needle in result.detail


def test_effective_sample_share_matches_its_formula():
    matched = np.array([True, True, False, True])
    w = ope.weights(matched, np.array([0.5, 0.25, 0.1, 0.5]))
    assert w.tolist() == [2.0, 4.0, 0.0, 2.0]
    assert ope.effective_sample_share(w) == pytest.approx(64 / 24 / 4)
    assert ope.effective_sample_share(np.zeros(3)) == 0.0
    # Equal weights on every row: the whole sample counts.
    assert ope.effective_sample_share(np.full(10, 3.0)) == pytest.approx(1.0)
