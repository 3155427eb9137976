"""The stages of one experiment, each callable on its own with typed inputs and outputs:

evaluate (static scan, sandbox fit/decide, output contract, look-ahead)  -> Evaluation
judge    (dev guards: significance, guardrails, support, segments, contamination, drift) -> Judgement
gate     (one holdout query, recorded in the ledger before anyone acts on it) -> GateOutcome
record   (keep transaction or ledger entry, immutable record files, MLflow run)

Evaluate is the expensive stage and touches no shared state (a coordinator may run many at once, a shadow trial
reuses it); judge, gate and record run in the coordinator, in proposal order.
"""
from optimizer.loop.stages.evaluate import (
    Evaluation,
    Inputs,
    PolicyRunner,
    evaluate,
    phase_failure,
    refit_spread,
    static_check,
)
from optimizer.loop.stages.gate import GateOutcome, ask_gate, gate, gate_result
from optimizer.loop.stages.judge import Judgement, judge
from optimizer.loop.stages.record import record
from optimizer.loop.stages.scoring import scores, state_scores

__all__ = ["Evaluation", "GateOutcome", "Inputs", "Judgement", "PolicyRunner", "ask_gate", "evaluate", "gate", "gate_result",
           "judge", "phase_failure", "record", "refit_spread", "scores", "state_scores", "static_check"]
