"""What each domain's metrics mean to a person: the unit, which way is better, and one line of meaning.

The domains report the names (`get_domain(d).demo.shown`, `primary`, the guardrails); this module only describes
them, for the demo's table and its trade-off lines. `higher_is_better` is None for a metric with no better
direction (a price level, say): it is shown, never called worse.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class MetricInfo:
    unit: str  # what one unit of the value is, e.g. "currency per transaction"
    higher_is_better: bool | None  # None: neither direction is better
    meaning: str  # one line

    @property
    def direction(self) -> str:
        if self.higher_is_better is None:
            return "no better direction"
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def label(self) -> str:
        """The unit and direction in one phrase: "share of legitimate transactions blocked, lower is better"."""
        return f"{self.unit}, {self.direction}"


def _m(unit: str, higher: bool | None, meaning: str) -> MetricInfo:
    return MetricInfo(unit, higher, meaning)


METRICS: dict[str, dict[str, MetricInfo]] = {
    "fraud": {
        "net_savings": _m("currency per transaction", True,
                          "fraud amount blocked minus the decline cost of each legitimate payment blocked, averaged "
                          "over all transactions"),
        "false_decline_rate": _m("share of legitimate transactions blocked", False,
                                 "good customers refused: the harm guardrail"),
        "alert_rate": _m("share of all transactions blocked", False,
                         "every block, fraud or not: the review team's load (the capacity guardrail)"),
        "fraud_recall": _m("share of fraudulent transactions caught", True, "fraud the policy blocks"),
        "precision": _m("share of blocked transactions that were fraud", True,
                        "how often a block is right; the rest are false declines"),
        "roc_auc": _m("0.5 (chance) to 1", True,
                      "how well the policy's score ranks fraud above legitimate payments, at any threshold"),
        "pr_auc": _m("0 to 1", True, "area under the precision-recall curve of the policy's score"),
        "false_decline_gap": _m("difference of two shares", False,
                                "false decline rate of new minus established customers, in absolute value (the "
                                "fairness guardrail)"),
    },
    "pricing": {
        "profit": _m("currency per offer", True,
                     "estimated profit per logged offer had the policy set the price (off-policy estimate)"),
        "profit_ci_low": _m("currency per offer", True, "lower end of the profit estimate's confidence interval"),
        "profit_ci_high": _m("currency per offer", True, "upper end of the profit estimate's confidence interval"),
        "conversion_ratio": _m("ratio to the logged conversion", True,
                               "estimated purchases at the policy's prices over those at the logged prices (the "
                               "harm guardrail)"),
        "price_gap_protected": _m("ratio minus 1", False,
                                  "highest over lowest mean price ratio of the protected groups, minus 1 (the "
                                  "fairness guardrail)"),
        "extreme_price_share": _m("share of offers", False,
                                  "prices further from the reference than scoring.max_price_deviation allows"),
        "ess_share": _m("share of offers", True,
                        "effective sample size of the importance weights: how much of the log backs the estimate"),
        "supported_share": _m("share of offers", True,
                              "prices the logging policy showed often enough to estimate their outcome"),
        "mean_price_ratio": _m("price / reference price", None, "the average price relative to the reference price"),
    },
    "routing": {
        "weighted_resolution_hours": _m("priority-weighted hours per ticket", False,
                                        "simulated time to resolution, weighted by scoring.priority_weight"),
        "mean_resolution_hours": _m("hours per ticket", False, "simulated time from arrival to resolution"),
        "first_team_resolution_rate": _m("share of tickets", True,
                                         "tickets routed straight to the team that resolved them"),
        "sla_compliance": _m("share of tickets", True, "tickets resolved within their priority's SLA hours"),
        "high_priority_misroute_rate": _m("share of high-priority tickets", False,
                                          "urgent tickets sent to the wrong team first (the harm guardrail)"),
        "max_team_utilization": _m("share of a team's hours", False,
                                   "the busiest team's busy hours over its available hours (the capacity guardrail)"),
        "tier_resolution_gap": _m("ratio minus 1", False,
                                  "slowest customer tier's mean resolution time over the fastest's, minus 1 (the "
                                  "fairness guardrail)"),
    },
}


def describe(domain: str, metric: str) -> MetricInfo | None:
    """The description of `metric` of `domain`, or None for one not described (shown by name alone)."""
    return METRICS.get(domain, {}).get(metric)


def described(domain: str) -> Mapping[str, MetricInfo]:
    return METRICS.get(domain, {})
