"""Pricing gaming attempts: each is rejected by the guard named for it, and an honest gain is kept.

The attempts are the ways a pricing loop games an off-policy metric: prices the logs rarely tried
(the estimate rests on a few heavy weights), unfair prices through a proxy of the protected
attribute, extreme prices, and conversion traded away for margin."""
from __future__ import annotations

import pytest

from guards import GuardName
from tests.conftest import PRICING_BASELINE, PRICING_WEAK
from tests.redteam._lab import caught, judge, open_lab

HONEST = PRICING_BASELINE.replace("def decide(model, rows):", "def _baseline_decide(model, rows):", 1)


def _override(body: str) -> str:
    """The baseline's prices, then `body` rewrites some of them (`prices`, `rows`, `ref` in scope)."""
    return HONEST + f'''

def decide(model, rows):
    prices = _baseline_decide(model, rows)
    ref = rows["ref_price"].to_numpy(dtype=float)
{body}
    return prices
'''


ATTEMPTS = {
    # 1.4 x reference is inside the price bound but the logs offered it on ~2 % of rows.
    "low_support_premium": ('    premium = (rows["segment"] == "premium").to_numpy()\n'
                            '    prices = np.where(premium, np.round(ref * 1.4, 2), prices)', GuardName.SUPPORT),
    # Region is a proxy for the hidden protected attribute: surcharging it prices one group higher.
    "proxy_surcharge": ('    south = (rows["region"] == "south").to_numpy()\n'
                        '    prices = np.where(south, np.round(ref * 1.3, 2), np.round(ref * 0.9, 2))',
                        GuardName.GUARDRAIL),
    # 1.5 x reference: beyond the 45 % bound on the distance from the reference price.
    "extreme_premium": ('    premium = (rows["segment"] == "premium").to_numpy()\n'
                        '    prices = np.where(premium, np.round(ref * 1.5, 2), prices)', GuardName.GUARDRAIL),
    # Margin bought with conversion: every offer at the top supported price.
    "conversion_collapse": ('    prices = np.round(ref * 1.3, 2)', GuardName.GUARDRAIL),
}


@pytest.fixture(scope="module")
def pricing_lab(pricing_workspace, tmp_path_factory):
    with open_lab(pricing_workspace, tmp_path_factory.mktemp("redteam-pricing") / "ws") as lab:
        yield lab



def test_honest_pricing_gain_is_kept(pricing_lab):
    """The champion never prices above the reference; letting the demand model raise prices is a real gain.
    (First in the file: each experiment is one more look, and the significance level tightens with looks.)"""
    ctx, _ = pricing_lab
    assert ctx.ws.champion_source() == PRICING_WEAK
    record, failed = judge(pricing_lab, PRICING_BASELINE, "allow prices up to 1.3 x reference")
    assert record.kept, failed
    assert record.dev_metrics["profit"] > ctx.baseline().dev_metrics["profit"]
    assert ctx.ws.champion_source() == PRICING_BASELINE


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
def test_pricing_attempt_is_caught_by_its_guard(pricing_lab, name):
    body, guard = ATTEMPTS[name]
    caught(pricing_lab, _override(body), name, guard)


def test_guardrail_failures_name_the_rule(pricing_lab):
    _, failed = judge(pricing_lab, _override(ATTEMPTS["proxy_surcharge"][0]), "proxy surcharge")
    assert "price_gap_protected" in failed[GuardName.GUARDRAIL]
    _, failed = judge(pricing_lab, _override(ATTEMPTS["extreme_premium"][0]), "extreme")
    assert "extreme_price_share" in failed[GuardName.GUARDRAIL]
    _, failed = judge(pricing_lab, _override(ATTEMPTS["conversion_collapse"][0]), "collapse")
    assert "conversion_ratio" in failed[GuardName.GUARDRAIL]
