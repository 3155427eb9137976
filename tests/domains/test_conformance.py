"""Every registered domain passes every conformance check, and a broken domain fails the check that guards it."""
from __future__ import annotations

import dataclasses
import functools

import pytest

from domains import DOMAINS, get_domain
from domains.conformance import (
    CHECKS,
    ConformanceError,
    check_columns_hidden,
    check_contributions_average_to_primary,
    check_domain,
    check_segments_cover_every_row,
    check_trace_bounded_and_dev_only,
    conformance_data,
)
from domains.contract import ScoreReport
from domains.fraud.adapter import FraudDomain

SIZES = {"routing": 2000}  # routing's generator is the slow one
SIZE = 3000


@functools.cache
def _data(name: str):
    """Built once per domain and worker: fitting the baseline is the slow part."""
    return conformance_data(get_domain(name), size=SIZES.get(name, SIZE))


@pytest.mark.parametrize("name,check", [pytest.param(name, check, id=f"{name}-{check_name}")
                                        for name in DOMAINS for check_name, check in CHECKS])
def test_domain_passes(name, check):
    check(get_domain(name), _data(name))


def test_checks_are_named_and_unique():
    names = [name for name, _ in CHECKS]
    assert len(names) == len(set(names)) and "contributions_average_to_primary" in names
    assert all(check.__name__ == f"check_{name}" for name, check in CHECKS)


class _Fraud(FraudDomain):
    """Fraud, defined outside its package: its files stay the fraud package's."""

    package_dir = FraudDomain().package_dir


class _OffContributions(_Fraud):
    def score(self, rows, decisions, params, *, detail=True):
        report = super().score(rows, decisions, params, detail=detail)
        return ScoreReport(report.primary, report.higher_is_better, report.metrics, report.contributions + 1.0,
                           report.segments)


class _LeakyView(_Fraud):
    def policy_view(self, frame, *, with_label):
        return frame[[c for c in frame.columns if c not in self.columns.outcome_only]]


class _ShortSegments(_Fraud):
    def segment_of(self, rows):
        return {family: labels[:-1] for family, labels in super().segment_of(rows).items()}


def test_contributions_off_the_primary_fail_by_name():
    broken = _OffContributions()
    with pytest.raises(ConformanceError, match=r"^fraud: contributions_average_to_primary: mean contribution"):
        check_contributions_average_to_primary(broken, dataclasses.replace(_data("fraud"), scorer=broken))


def test_a_label_shown_at_decision_time_fails_by_name():
    with pytest.raises(ConformanceError, match=r"^fraud: columns_hidden: .*\['is_fraud'\]"):
        check_columns_hidden(_LeakyView(), _data("fraud"))


def test_segments_one_row_short_fail_by_name():
    with pytest.raises(ConformanceError, match=r"^fraud: segments_cover_every_row: segment_of\(\)\['amount_band'\]"):
        check_segments_cover_every_row(_ShortSegments(), _data("fraud"))


def test_check_domain_raises_the_first_failure_as_an_assertion():
    with pytest.raises(AssertionError, match=r"^fraud: columns_hidden: "):
        check_domain(_LeakyView(), size=1000)


def test_a_crashing_method_fails_the_check_that_called_it():
    class Crashing(_Fraud):
        def segment_of(self, rows):
            raise KeyError("amount")

    with pytest.raises(ConformanceError, match=r"^fraud: segments_cover_every_row: raised KeyError"):
        check_segments_cover_every_row(Crashing(), _data("fraud"))


def test_trace_naming_a_train_row_fails():
    class Leaking(_Fraud):
        def trace(self, rows, decisions, params, limit=20, report=None):
            return {**super().trace(rows, decisions, params, limit, report), "extra": [{"tx_id": 0}]}

    data = _data("fraud")
    assert 0 in set(data.train["tx_id"]) and 0 not in set(data.eval["tx_id"])
    broken = Leaking()
    with pytest.raises(ConformanceError, match=r"^fraud: trace_bounded_and_dev_only: trace names 1 id"):
        check_trace_bounded_and_dev_only(broken, dataclasses.replace(data, scorer=broken))


def test_a_missing_baseline_is_reported_not_crashed(tmp_path):
    class Bare(FraudDomain):
        package_dir = tmp_path

    data = conformance_data(Bare(), size=500)
    assert data.decisions is None
    with pytest.raises(ConformanceError, match=r"^fraud: baseline_output_contract: no baseline policy"):
        dict(CHECKS)["baseline_output_contract"](Bare(), data)
