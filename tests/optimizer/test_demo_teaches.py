"""The demo's summary teaches: units and directions, the gated gain in a sentence, the trade-offs, what was not
checked and the next command; the shadow commands end with their next step; the report's segment chart leaves out
segments too small to judge. Plain states and a config, no workspace (the full demo takes minutes)."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from rich.console import Console

from domains import DOMAINS, get_domain
from holdout.audit import AuditReport, Check
from optimizer.cli.demo import DemoRun, demo_summary
from optimizer.records.policy_state import PolicyState
from optimizer.report.metrics import describe
from optimizer.workspace.config import RunConfig
from tests._readme import pattern

BASE = dict(net_savings=0.9475, false_decline_rate=0.000412, alert_rate=0.004, fraud_recall=0.5, precision=0.96,
            roc_auc=0.9, pr_auc=0.6)
CHAMP = dict(net_savings=1.0605, false_decline_rate=0.0028, alert_rate=0.0035, fraud_recall=0.7, precision=0.80,
             roc_auc=0.9, pr_auc=0.61)


def state(exp: str, metrics: dict, reported: float = 0.0, lower: float = 0.0, upper: float = 0.0) -> PolicyState:
    return PolicyState(exp, "c" * 40, np.zeros(1), np.zeros(1), {}, metrics, reported, reported_lower=lower,
                       reported_upper=upper)


def audit_report(hmac_checked: bool = False) -> AuditReport:
    checks = [Check(f"check{i}", True, "ok") for i in range(18)]
    return AuditReport("ws", (*checks, Check("hmac", True, "no RATCHET_SEAL_KEY", checked=hmac_checked)))


def render(parts: list) -> list[str]:
    console = Console(file=io.StringIO(), width=120)
    for part in parts:
        console.print(part, markup=False) if isinstance(part, str) else console.print(part)
    return console.file.getvalue().splitlines()


def summary(base=BASE, champ=CHAMP, config=None, report=None, **run) -> list:
    config = config or RunConfig.model_validate({"domain": "fraud"})
    facts = {"experiments": 20, "kept": 1, "candidates": 20, "asked": 2, "budget_left": 98, "last": "exp-0020", **run}
    champion = state("exp-0004", champ, 0.0567, 0.0123, 0.1115) if champ is not None else state("baseline", base)
    return demo_summary("fraud", state("baseline", base), champion, config, report or audit_report(),
                        DemoRun(**facts), workspace="demo-workspace")


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_shown_metric_has_a_unit_and_direction(domain):
    adapter = get_domain(domain)
    for metric in adapter.demo.shown:
        info = describe(domain, metric)
        assert info is not None, f"{domain}.{metric} has no description in optimizer/report/metrics.py"
        assert info.unit and info.meaning and "better" in info.label
    assert describe(domain, adapter.primary).higher_is_better is adapter.higher_is_better
    for spec in adapter.guardrails:
        info = describe(domain, spec.metric)
        assert info is not None and info.higher_is_better is spec.higher_is_better, spec.metric


def test_trade_offs_are_named_exactly_for_the_metrics_that_got_worse():
    lines = [p for p in summary() if isinstance(p, str)]
    trades = [line for line in lines if line.startswith("trade-off: ")]
    assert [t.split()[1] for t in trades] == ["false_decline_rate", "precision"]
    fdr, precision = trades
    assert "0.000412 -> 0.0028 (x 6.8, worse; guardrail limit: at most 0.01 above the baseline" in fdr
    assert "0.9600 -> 0.8000 (x 0.83, worse; no guardrail)" in precision
    # the limit is the workspace's: its config overrides the domain's tolerance
    config = RunConfig.model_validate({"domain": "fraud", "guardrails": {"false_decline_rate": {"tolerance": 0.005}}})
    assert "at most 0.005 above the baseline" in next(
        p for p in summary(config=config) if isinstance(p, str) and p.startswith("trade-off: false_decline_rate"))
    nothing_worse = [p for p in summary(champ=BASE | {"net_savings": 1.0}) if isinstance(p, str)]
    assert not any(p.startswith("trade-off") for p in nothing_worse)


def test_the_gated_gain_is_one_sentence_with_its_numbers():
    sentence = next(p for p in summary(candidates=23, asked=3, budget_left=97) if isinstance(p, str)
                    and p.startswith("The holdout confirms"))
    for part in ("+0.0567 in net_savings (currency per transaction, higher is better)",
                 "90 % interval +0.0123 to +0.1115", "picked among 23 candidates", "asked 3 times",
                 "97 tests are left"):
        assert part in sentence
    unkept = [p for p in summary(champ=None, kept=0) if isinstance(p, str)]
    assert any(p.startswith("No candidate passed") and "still the baseline" in p for p in unkept)
    assert any("`ratchet show demo-workspace exp-0020` (why it was not kept)" in p for p in unkept)
    assert not any("shadow start" in p for p in unkept)


def test_pricing_next_step_offers_no_shadow_trial():
    """A pricing trial cannot measure profit (a price never shown has no outcome): no shadow start is suggested."""
    from optimizer.cli.demo import next_line

    champ, base = state("exp-0002", {}), state("baseline", {})
    run = DemoRun(20, 1, 20, 1, 99)
    assert "shadow start" in next_line("ws", champ, base, run, shadow=get_domain("fraud").shadow.measurable)
    assert "shadow start" not in next_line("ws", champ, base, run, shadow=get_domain("pricing").shadow.measurable)


def test_audit_line_names_what_was_not_checked_and_next_names_the_commands():
    lines = [p for p in summary() if isinstance(p, str)]
    assert "audit: intact (19 checks, 1 not checked: hmac)" in lines
    assert "audit: intact (19 checks)" in [p for p in summary(report=audit_report(True)) if isinstance(p, str)]
    nxt = next(p for p in lines if p.startswith("Next: "))
    for command in ("`ratchet show demo-workspace exp-0004` (why it was kept)", "`ratchet report demo-workspace`",
                    "`ratchet shadow start demo-workspace --challenger exp-0004 --events FILE`"):
        assert command in nxt


def test_table_rows_keep_the_readme_shape():
    printed = render(summary())
    assert any(line.startswith("fraud demo: 20 experiments, 1 kept (dev metrics)") for line in
               (p.strip() for p in printed))
    rows = {"│ net_savings          …   0.9475 │   1.0605 │",
            "│ false_decline_rate   …   0.0004 │   0.0028 │"}
    for row in rows:
        assert any(pattern(row).search(line) for line in printed), row
    assert any(re.search(r"│ net_savings\s+│ currency per transaction, higher is better", line) for line in printed)


def test_shadow_commands_end_with_their_next_step(monkeypatch):
    import optimizer.cli.shadow as cli_shadow

    figures = {"challenger": {"experiment": "exp-0004", "commit": "a" * 40}}
    assert cli_shadow.report_next("ws", "trial-0001", "passed", figures) \
        .startswith("`ratchet promote ws exp-0004 --approved-by NAME`")
    pending = cli_shadow.report_next("ws", "trial-0001", "pending", figures)
    assert pending.startswith("join more outcomes and look again")
    assert "`ratchet shadow report ws trial-0001`" in pending
    assert cli_shadow.report_next("my ws", "trial-0001", "failed", {}).startswith("the challenger is not promoted; ")
    assert "`ratchet run 'my ws'`" in cli_shadow.report_next("my ws", "trial-0001", "failed", {})
    assert "promote ws 0123456789ab " in cli_shadow.report_next("ws", "t", "passed", {"challenger": {
        "experiment": None, "commit": "0123456789abcdef"}})
    out, err = Console(file=io.StringIO(), width=40), Console(file=io.StringIO(), width=40)
    monkeypatch.setattr(cli_shadow, "out", out)
    monkeypatch.setattr(cli_shadow, "err", err)
    long_step = "`ratchet shadow report a-rather-long-workspace-name trial-0001`"
    cli_shadow._next(long_step, as_json=True)  # under --json stdout stays pure JSON
    assert out.file.getvalue() == "" and err.file.getvalue() == f"Next: {long_step}\n"
    cli_shadow._next(long_step)
    assert out.file.getvalue() == f"Next: {long_step}\n"  # one line, never wrapped: a command to copy


def test_segment_chart_leaves_out_segments_under_min_rows():
    from optimizer.report import plots
    from optimizer.report.facts import SegmentRow

    rows = [SegmentRow("amount_band", "high", 5_000, 1.0, 1.1), SegmentRow("amount_band", "tiny", 6, 40.0, -30.0),
            SegmentRow("hour", "night", 199, 2.0, 2.5), SegmentRow("hour", "day", 200, 0.9, 1.0)]
    drawn, small, note = plots.charted(rows, 200)
    assert [r.segment for r in drawn] == ["high", "day"]
    assert [r.segment for r in small] == ["tiny", "night"]
    assert note == "2 segments under 200 rows not drawn (in the table)"
    assert plots.charted(rows, 10)[2] == "1 segment under 10 rows not drawn (in the table)"
    assert plots.charted(rows[:1], 200)[1:] == ([], "")
    titles = []
    import matplotlib.axes

    real = matplotlib.axes.Axes.set_title
    ticks = []
    real_ticks = matplotlib.axes.Axes.set_yticks

    def spy_title(ax, title, *a, **k):
        titles.append(title)
        return real(ax, title, *a, **k)

    def spy_ticks(ax, positions, labels=None, *a, **k):
        ticks.append(list(labels or []))
        return real_ticks(ax, positions, labels, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(matplotlib.axes.Axes, "set_title", spy_title)
        mp.setattr(matplotlib.axes.Axes, "set_yticks", spy_ticks)
        png = plots.segments(rows, primary="net_savings", min_rows=200)
        assert plots.segments(rows[1:2], primary="net_savings").startswith(b"\x89PNG")  # nothing large enough
    assert png.startswith(b"\x89PNG")
    assert titles[0].endswith("; 2 segments under 200 rows not drawn (in the table)")
    assert ticks[0] == ["amount_band=high (5,000)", "hour=day (200)"]
