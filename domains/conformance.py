"""The domain conformance suite, in the style of scikit-learn's check_estimator.

Each check `check_<name>(domain, data)` raises ConformanceError "<domain>: <name>: what is wrong; what to fix".
`data` (conformance_data) is built once per domain; `check_domain` runs every check in CHECKS.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import json
import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd

from domains.contract import Decisions, Domain, ScoreReport
from domains.history import History, declared

TRAIN_SHARE = 0.6  # the first 60 % of rows (by time) train the baseline and the scorer; the rest is scored
MAX_NEWCOMERS = 0.1  # share of a continued world's events by entities the generated frame never had
MAX_TRACE_BYTES = 200_000  # a trace is read by proposers: it must stay small whatever the row count


class ConformanceError(AssertionError):
    """A domain breaks its contract; the message names the domain, the check, the problem and the fix."""


class _Problem(Exception):
    """Raised inside a check; its wrapper turns it into a ConformanceError naming domain and check."""


def _expect(ok: Any, problem: str) -> None:
    if not ok:
        raise _Problem(problem)


@dataclass(frozen=True, eq=False)
class ConformanceData:
    """What the checks share for one domain, built once (fitting the baseline is the slow part)."""

    seed: int
    size: int
    frame: pd.DataFrame  # domain.generate(seed, size)
    train: pd.DataFrame  # the first TRAIN_SHARE of frame
    eval: pd.DataFrame  # the rest
    params: Mapping[str, Any]  # the shipped scoring settings
    scorer: Domain  # domain.prepared(train, params)
    decisions: Decisions | None  # the baseline's on eval; None when policy.py is missing (files_present says so)
    policy: Any = None  # the baseline's module and its fitted model, for the history check
    model: Any = None


def _load_policy(domain: Domain) -> ModuleType:
    """The shipped baseline policy module, imported in-process (trusted code, not a candidate)."""
    spec = importlib.util.spec_from_file_location(f"_conformance_{domain.name}_policy", domain.baseline_policy)
    assert spec is not None and spec.loader is not None, f"{domain.baseline_policy} is a .py file"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if getattr(module, "DEVICE", None) == "auto":
        setattr(module, "DEVICE", "cpu")  # the sandbox resolves "auto" before fit; xgboost refuses it as a device name
    return module


def conformance_data(domain: Domain, *, seed: int = 0, size: int = 5000) -> ConformanceData:
    """Generate, split by time, prepare the scorer and run the baseline policy on the eval part."""
    frame = domain.generate(seed, size)
    cut = int(len(frame) * TRAIN_SHARE)
    train, evaluated = frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)
    params = domain.scoring().model_dump()
    decisions = None
    if domain.baseline_policy.is_file():
        try:
            policy = _load_policy(domain)
            model = policy.fit(domain.policy_view(train, with_label=True))
            view = domain.policy_view(evaluated, with_label=False)
            values = np.asarray(_decide(domain, policy, model, view, _events(domain, train, view), len(train)))
        except Exception as exc:
            raise ConformanceError(f"{domain.name}: conformance_data: the baseline {domain.baseline_policy} failed "
                                   f"on generated data ({type(exc).__name__}: {exc}); fix the policy or the "
                                   "generator so fit and decide run") from exc
        decisions = Decisions(values, {k: getattr(policy, k) for k in domain.constants if hasattr(policy, k)})
        return ConformanceData(seed, size, frame, train, evaluated, params, domain.prepared(train, params), decisions,
                               policy, model)
    return ConformanceData(seed, size, frame, train, evaluated, params, domain.prepared(train, params), decisions)


def _events(domain: Domain, train: pd.DataFrame, view: pd.DataFrame) -> History:
    """Train's events then `view`'s, as the workspace's history holds them."""
    cols = domain.columns
    events = pd.concat([domain.policy_view(train, with_label=False)[list(view.columns)], view], ignore_index=True)
    return History.of(events, time=cols.time, keys=cols.history_keys)


def _decide(domain: Domain, policy: Any, model: Any, rows: pd.DataFrame, past: History, before: int) -> Any:
    """The baseline's decide as the sandbox calls it: with the history it declares (the first `before` events)."""
    days, takes = declared(domain.baseline_policy.read_text())
    if not takes:
        return policy.decide(model, rows)
    return policy.decide(model, rows, past.window(rows, days, before=before) if days > 0 else rows.iloc[:0])


CheckFunction = Callable[[Domain, ConformanceData], None]
_REGISTERED: list[tuple[str, CheckFunction]] = []


def _check(function: CheckFunction) -> CheckFunction:
    """Register a check under its name (function name less `check_`) and prefix its failures with it."""
    name = function.__name__.removeprefix("check_")

    @functools.wraps(function)
    def run(domain: Domain, data: ConformanceData) -> None:
        try:
            function(domain, data)
        except _Problem as problem:
            raise ConformanceError(f"{domain.name}: {name}: {problem}") from None
        except Exception as exc:  # a domain method that crashes fails the check that called it
            if isinstance(exc, ConformanceError):
                raise
            raise ConformanceError(f"{domain.name}: {name}: raised {type(exc).__name__}: {exc}; fix the method "
                                   "in the traceback") from exc

    _REGISTERED.append((name, run))
    return run


def _baseline(domain: Domain, data: ConformanceData) -> Decisions:
    if data.decisions is None:
        raise _Problem(f"no baseline policy at {domain.baseline_policy}; ship policy.py")
    return data.decisions


def _score(domain: Domain, data: ConformanceData, *, detail: bool = True) -> ScoreReport:
    return data.scorer.score(data.eval, _baseline(domain, data), data.params, detail=detail)


def _same(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    return bool(pd.Series(dict(a), dtype=float).equals(pd.Series(dict(b), dtype=float)))  # NaN equals NaN


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise _Problem(f"{what} is not JSON-serialisable ({exc}); return str, numbers, lists and dicts") from None


@_check
def check_generate_deterministic(domain: Domain, data: ConformanceData) -> None:
    """Runs are reproducible from a seed, and splits by time and id joins are sound."""
    cols, frame = domain.columns, data.frame
    _expect(domain.generate(data.seed, data.size).equals(frame),
            "generate() gave different frames for the same seed; draw every random number from the seed")
    _expect(not domain.generate(data.seed + 1, data.size).equals(frame),
            "generate() gave the same frame for another seed; pass the seed to the random generator")
    declared = (cols.id, cols.time, cols.label, *cols.decision_time, *cols.outcome_only, *cols.train_only)
    missing = [c for c in dict.fromkeys(declared) if c not in frame.columns]
    _expect(not missing, f"generated data lacks declared column(s) {missing}; generate them or fix `columns`")
    _expect(frame[cols.id].is_unique, f"ids in {cols.id!r} are not unique; number the rows")
    _expect(frame[cols.time].is_monotonic_increasing, f"generated data is not sorted by {cols.time!r}; sort it")


@_check
def check_world_continues(domain: Domain, data: ConformanceData) -> None:
    """`continue_population`, where a domain has it, gives later events of the same world: reproducible from its
    seeds, in the window asked for, sorted, with the generated frame's columns and types, and nearly all of its
    events by entities (the history keys) the generated frame has, so a policy's history of them carries on."""
    cols, frame = domain.columns, data.frame
    start = frame[cols.time].max().floor("D") + pd.Timedelta(days=1)
    later = domain.continue_population(data.seed, data.size, start=start, days=7, live_seed=1)
    if later is None:
        return  # `ratchet events` draws a new world, with entity ids of its own
    _expect(len(later) > 0, "continue_population gave no event in 7 days; draw at the generated daily volume")
    again = domain.continue_population(data.seed, data.size, start=start, days=7, live_seed=1)
    _expect(again is not None and again.equals(later), "continue_population gave different frames for the same "
                                                       "seeds; draw every random number from seed and live_seed")
    other = domain.continue_population(data.seed, data.size, start=start, days=7, live_seed=2)
    _expect(other is not None and not other.equals(later),
            "continue_population gave the same frame for another live_seed; use it")
    times = later[cols.time]
    _expect(times.is_monotonic_increasing and times.min() >= start and times.max() < start + pd.Timedelta(days=7),
            f"continue_population's times are not sorted within [{start}, +7 days); draw them from `start`")
    _expect(list(later.columns) == list(frame.columns) and later.dtypes.equals(frame.dtypes),
            "continue_population's columns or dtypes differ from generate()'s; build both with the same code")
    # A few newcomers are a world going on; mostly strangers under the generated ids would be another world.
    strangers = {k: f"{share:.0%}" for k in cols.history_keys
                 if (share := float((~later[k].isin(frame[k])).mean())) > MAX_NEWCOMERS}
    _expect(not strangers, f"continue_population's events are mostly by entities generate() never drew ({strangers} "
                           "of them); continue its population, or return None to let `ratchet events` draw a new world")


@_check
def check_columns_hidden(domain: Domain, data: ConformanceData) -> None:
    """A policy never sees the label or a logged action at decision time, nor outcome-only columns at all."""
    cols = domain.columns
    decide = set(domain.policy_view(data.frame, with_label=False).columns)
    fit = set(domain.policy_view(data.frame, with_label=True).columns)
    shown = sorted(decide & {cols.label, *cols.outcome_only, *cols.train_only})
    _expect(not shown, f"policy_view(with_label=False) shows {shown}; hide the label, outcome_only and train_only")
    leaked = sorted(fit & set(cols.outcome_only))
    _expect(not leaked, f"policy_view(with_label=True) shows outcome-only {leaked}; hide them on train too")
    absent = sorted({cols.label, *cols.train_only} - fit)
    _expect(not absent, f"policy_view(with_label=True) lacks {absent}; fit needs the label and train-only columns")
    declared = sorted(set(cols.decision_time) & {cols.label, *cols.outcome_only, *cols.train_only})
    _expect(not declared, f"columns.decision_time names {declared}; remove them: they are not known at decision time")


@_check
def check_data_contract(domain: Domain, data: ConformanceData) -> None:
    """Generated data passes the domain's own contract, whose suite can be written to a workspace."""
    try:
        domain.check_contract(data.frame, source="generated")
    except Exception as exc:
        raise _Problem(f"check_contract refused generated data ({exc}); make generator and expectations agree")
    suite = domain.contract_suite(data.frame)
    _expect(isinstance(suite, dict), f"contract_suite returned {type(suite).__name__}; return the suite as a dict")
    _json(suite, "contract_suite")


@_check
def check_baseline_output_contract(domain: Domain, data: ConformanceData) -> None:
    """The shipped baseline meets the output contract, and the contract refuses a wrong row count."""
    decisions, view = _baseline(domain, data), domain.policy_view(data.eval, with_label=False)
    problem = domain.check_decisions(decisions, view, data.params)
    _expect(problem is None, f"check_decisions refused the baseline's decisions: {problem}; fix one of the two")
    short = domain.check_decisions(Decisions(decisions.values[:-1], decisions.constants), view, data.params)
    _expect(isinstance(short, str) and short, "check_decisions accepted one decision too few; compare the decision "
                                              "count with the row count and return a message")


@_check
def check_baseline_decides_alike_alone_and_in_a_batch(domain: Domain, data: ConformanceData) -> None:
    """The parity guard's question for the shipped baseline: 20 evaluated rows, each decided alone with the history
    serve would give it, get their batch decisions (a baseline the loop could not keep a copy of is a broken ship)."""
    if data.decisions is None:
        return
    view = domain.policy_view(data.eval, with_label=False)
    past = _events(domain, data.train, view)
    for i in np.linspace(0, len(view) - 1, 20).astype(int).tolist():
        alone = np.asarray(_decide(domain, data.policy, data.model, view.iloc[i:i + 1].reset_index(drop=True), past,
                                   len(data.train) + i))
        batch = np.asarray(data.decisions.values)[i]
        same = np.isclose(alone[0], batch, rtol=0, atol=1e-9) if np.issubdtype(alone.dtype, np.number) \
            else alone[0] == batch
        _expect(same, f"evaluated row {i} is decided {alone[0]!r} alone (with its history) but {batch!r} in the "
                      "batch; the baseline's decide must read earlier events from `history` (HISTORY_DAYS), not "
                      "from the other rows of the call")


@_check
def check_contributions_average_to_primary(domain: Domain, data: ConformanceData) -> None:
    """Paired tests on per-row contributions test the very metric the gate reports."""
    report = _score(domain, data)
    contrib = np.asarray(report.contributions, dtype=float)
    _expect(contrib.shape == (len(data.eval),),
            f"contributions have shape {contrib.shape} for {len(data.eval)} rows; return one per row")
    _expect(report.primary == domain.primary and report.primary in report.metrics,
            f"the report's primary {report.primary!r} is not {domain.primary!r} among its metrics; report it")
    primary = float(report.metrics[report.primary])
    _expect(math.isclose(float(contrib.mean()), primary, rel_tol=1e-9, abs_tol=1e-9),
            f"mean contribution {float(contrib.mean())!r} != metrics[{report.primary!r}] {primary!r}; make the "
            "primary the mean of the contributions")
    _expect(report.value == primary, f"report.value {report.value!r} != metrics[primary] {primary!r}")


@_check
def check_guardrail_metrics_present(domain: Domain, data: ConformanceData) -> None:
    """Every required guardrail can be judged, with or without detail."""
    for detail in (True, False):
        metrics = _score(domain, data, detail=detail).metrics
        for spec in domain.guardrails:
            value = metrics.get(spec.metric)
            _expect(value is not None or not spec.required,
                    f"score(detail={detail}) lacks required guardrail metric {spec.metric!r}; report it")
            _expect(value is None or math.isfinite(value),
                    f"guardrail metric {spec.metric!r} is {value!r} (detail={detail}); report a finite value")


@_check
def check_segments_cover_every_row(domain: Domain, data: ConformanceData) -> None:
    """Segment guards compare every row, and the report's segments add up to the rows scored."""
    n = len(data.eval)
    for family, labels in domain.segment_of(data.eval).items():
        labels = np.asarray(labels)
        _expect(labels.shape == (n,), f"segment_of()[{family!r}] has shape {labels.shape} for {n} rows; name "
                                      "the segment of every row")
        _expect(not pd.isna(labels).any(), f"segment_of()[{family!r}] has missing values; name them '(missing)'")
    for family, segments in _score(domain, data).segments.items():
        counted = sum(s.get("n", 0.0) for s in segments.values())
        _expect(counted == n, f"report.segments[{family!r}] counts {counted} rows of {n}; give each segment its n")


@_check
def check_scoring_deterministic(domain: Domain, data: ConformanceData) -> None:
    """A score is reproducible: the seal, the ledger and the gate rely on it."""
    first, second = _score(domain, data), _score(domain, data)
    _expect(_same(first.metrics, second.metrics),
            "scoring the same decisions twice gave different metrics; seed every random draw in score()")
    _expect(np.array_equal(first.contributions, second.contributions, equal_nan=True),
            "scoring the same decisions twice gave different contributions; make score() deterministic")
    brief = _score(domain, data, detail=False)
    _expect(brief.value == first.value, f"score(detail=False) gives primary {brief.value!r}, detail=True "
                                        f"{first.value!r}; detail may only add metrics")
    again = domain.prepared(data.train, data.params).score(data.eval, _baseline(domain, data), data.params)
    _expect(_same(again.metrics, first.metrics),
            "a second prepared(train) scores differently; fit the scorer deterministically in the train rows")


def _leaves(node: Any, key: Any = None) -> Iterator[tuple[Any, Any]]:
    """(key, value) of every scalar in a JSON-like tree; dict keys are yielded too, with key None."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield None, k
            yield from _leaves(v, k)
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from _leaves(item, key)
    else:
        yield key, node


@_check
def check_trace_bounded_and_dev_only(domain: Domain, data: ConformanceData) -> None:
    """The trace proposers read is small, JSON, and holds nothing of rows it was not given."""
    cols = domain.columns
    trace = data.scorer.trace(data.eval, _baseline(domain, data), data.params)
    text = _json(trace, "trace")
    _expect(len(text) <= MAX_TRACE_BYTES, f"trace is {len(text)} bytes (limit {MAX_TRACE_BYTES}); bound it by `limit`")
    outside = set(data.train[cols.id].tolist()) - set(data.eval[cols.id].tolist())
    # Numeric ids collide with counts: they are matched only under the id key; string ids anywhere.
    textual = not pd.api.types.is_numeric_dtype(data.frame[cols.id])
    pairs = list(_leaves(trace))
    leaked = [v for k, v in pairs if (k == cols.id or (textual and isinstance(v, str))) and v in outside]
    _expect(not leaked, f"trace names {len(leaked)} id(s) of rows not given to it (e.g. {leaked[:1]}); trace `rows`")
    hidden = sorted({v for k, v in pairs if k is None} & set(cols.outcome_only))
    _expect(not hidden, f"trace shows outcome-only column(s) {hidden}; leave them out of the trace")


def _assignments(source: str) -> dict[str, list[str]]:
    """Module-level names assigned in `source` -> the source lines of their assignment."""
    lines, found = source.splitlines(), {}
    for node in ast.parse(source).body:
        targets = getattr(node, "targets", [getattr(node, "target", None)]) if isinstance(
            node, (ast.Assign, ast.AnnAssign)) else []
        for name in (n for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)):
            found[name.id] = lines[node.lineno - 1:node.end_lineno]
    return found


@_check
def check_files_present(domain: Domain, data: ConformanceData) -> None:
    """`ratchet init` and `ratchet demo` find every file and name the domain declares."""
    _expect(domain.baseline_policy.is_file(), f"{domain.baseline_policy} is missing; ship a baseline policy")
    _expect(domain.program.is_file(), f"{domain.program} is missing; ship the proposer's program.md")
    _expect(isinstance(domain.primary, str) and domain.primary, "no primary metric; set `primary`")
    assigned = _assignments(domain.baseline_policy.read_text())
    for key in domain.demo.start:
        _expect(key in assigned, f"demo.start sets {key!r}, which policy.py does not assign; name a tunable")
        _expect(any("# tune:" in line for line in assigned[key]),
                f"demo.start sets {key!r}, which policy.py does not mark `# tune:`; mark it or drop it")
    absent = [k for k in domain.constants if k not in assigned]
    _expect(not absent, f"policy.py does not assign the constant(s) {absent} the scorer reads; define them")
    extra = sorted(set(domain.import_keys.required) - set(domain.import_keys.keys))
    _expect(not extra, f"import_keys.required has {extra}, not in import_keys.keys; add them to keys")
    for variant, file in domain.variants.items():
        _expect((domain.package_dir / file).is_file(), f"variant {variant!r} names {file}, missing from "
                                                       f"{domain.package_dir}; ship it or drop the variant")


CHECKS: tuple[tuple[str, CheckFunction], ...] = tuple(_REGISTERED)


def check_domain(domain: Domain, *, seed: int = 0, size: int = 5000) -> None:
    """Run every check on data generated with `seed` and `size`; raise the first ConformanceError."""
    data = conformance_data(domain, seed=seed, size=size)
    for _, check in CHECKS:
        check(domain, data)
