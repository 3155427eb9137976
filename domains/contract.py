"""The domain contract: what a business domain must provide, and its conformance checks.

A domain owns the scorer side (locked: the candidate never sees it), the data (generator and
importer), the baseline policy and everything the rest of the system needs to know about it: its
scoring settings, import keys, demo settings and default guardrails. Adding a domain is adding a
folder domains/<name>/ (plus configs/<name>.yaml) that passes the conformance suite in
domains/conformance.py.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class Columns:
    """Which columns exist and who may see them."""

    id: str  # unique row identifier
    time: str  # event time; splits are by time
    label: str  # the outcome a policy learns from on train; never shown at decision time
    decision_time: tuple[str, ...]  # shown to a policy (fit and decide)
    outcome_only: tuple[str, ...] = ()  # never shown to a policy, not even on train
    entity: str | None = None  # e.g. the customer: used for overlap checks and segments
    train_only: tuple[str, ...] = ()  # shown with the label on train, never at decision time (a logged action)
    history: tuple[str, ...] = ()  # whose earlier events a decision may read (domains.history); default: the entity

    @property
    def history_keys(self) -> tuple[str, ...]:
        return self.history or ((self.entity,) if self.entity else ())

    def policy_columns(self, frame: pd.DataFrame, *, with_label: bool) -> list[str]:
        """Columns of `frame` a policy may see, in frame order."""
        hidden = set(self.outcome_only) | (set() if with_label else {self.label, *self.train_only})
        return [c for c in frame.columns if c not in hidden]


GUARDRAIL_KINDS = ("capacity", "harm", "fairness")


@dataclass(frozen=True)
class GuardrailSpec:
    """One guardrail metric, of the kind that fits what it protects.

    capacity  an absolute ceiling (or floor) the business can carry, e.g. the alerts a review team can
              handle: `limit` only. Alerting more than a champion that alerted on nothing is no harm.
    harm      something a customer pays for, e.g. false declines: at most `tolerance` worse than the
              ORIGINAL baseline (in the metric's units, so many small steps cannot add up), and per step at
              most `margin` x the champion's value worse than the champion (relative; when the champion's
              value is below the tolerance, `margin` x the tolerance, so a champion that harms no one can
              still be replaced). An absolute `limit` may be added.
    fairness  an absolute bound on a gap between groups, e.g. false declines of new vs established
              customers: `limit` only.
    `required=False`: a metric the data may not support (no group column); when no policy reports it the
    guardrail is skipped with a note, when only some do it fails closed.
    """

    metric: str
    higher_is_better: bool
    kind: str  # capacity | harm | fairness
    limit: float | None = None  # the metric must stay at or above (higher is better) or at or below this
    tolerance: float | None = None  # harm: worst change vs the original baseline, in the metric's units (>= 0)
    margin: float | None = None  # harm: worst change vs the champion, relative to the champion's value (>= 0)
    required: bool = True

    def __post_init__(self) -> None:
        if self.kind not in GUARDRAIL_KINDS:
            raise ValueError(f"guardrail {self.metric}: kind must be one of {', '.join(GUARDRAIL_KINDS)}, "
                             f"got {self.kind!r}")
        for key in ("tolerance", "margin"):
            value = getattr(self, key)
            if value is not None and self.kind != "harm":
                raise ValueError(f"guardrail {self.metric} ({self.kind}): {key} applies to harm guardrails only; "
                                 f"a {self.kind} guardrail takes a limit")
            if value is not None and not value >= 0:
                raise ValueError(f"guardrail {self.metric}: {key} must be >= 0, got {value!r}")
        if self.kind != "harm" and self.limit is None:
            raise ValueError(f"guardrail {self.metric} ({self.kind}): needs a limit")
        if self.kind == "harm" and self.limit is None and self.tolerance is None and self.margin is None:
            raise ValueError(f"guardrail {self.metric} (harm): needs a tolerance, a margin or a limit")


class ScoringSettings(BaseModel):
    """A domain's `scoring:` section of its config (unknown keys and wrong types refused); a domain subclasses it
    with its own fields, whose defaults are the shipped behaviour. The scorer reads them as `params`. Every float
    is finite (NaN and infinity refused, in lists and mappings too); a subclass bounds each field's range."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


@dataclass(frozen=True)
class ImportKeys:
    """The `ratchet init DOMAIN --data FILE --map KEY=COLUMN` keys a domain's importer reads."""

    keys: tuple[str, ...]  # every key, in the importer's order
    required: tuple[str, ...]  # the keys an import must map


@dataclass(frozen=True)
class DemoSettings:
    """How `ratchet demo --domain NAME` runs the domain."""

    start: Mapping[str, Any]  # tunables of the starting policy: under-tuned on purpose, so there is a gain to find
    rows: int  # generated rows
    shown: tuple[str, ...]  # dev metrics in the closing table
    workspace: str | None = None  # default folder (None: <name>-demo)


@dataclass(frozen=True)
class ShadowSettings:
    """What a shadow trial can measure for the domain on live events, and how their outcomes arrive."""

    measurable: bool  # the primary metric can be computed on live outcomes for both policies
    why: str = ""  # when it cannot: what the report says instead
    delay_days: tuple[float, float] = (0.0, 0.0)  # an outcome becomes known this many days after its event (uniform)
    settle_days: float = 0.0  # a "nothing happened" outcome (e.g. no chargeback) is known this many days after
    blocks: bool = False  # a positive decision stops the event (a blocked payment): its outcome is then not observed
    review_share: float = 1.0  # ... except for this share of stopped events, labelled by a review
    cost: str = ""  # the scoring setting that is a business assumption (a decline's cost): the report checks a range


@dataclass(frozen=True)
class Decisions:
    """What a policy decided: one value per row, plus the module constants the domain needs."""

    values: np.ndarray
    constants: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreReport:
    """Everything the scorer measured on one row set."""

    primary: str
    higher_is_better: bool
    metrics: Mapping[str, float]  # primary, guardrails and secondaries
    contributions: np.ndarray  # per-row contribution; its mean is metrics[primary]
    segments: Mapping[str, Mapping[str, Mapping[str, float]]]  # family -> segment -> metrics (+ "n")

    @property
    def value(self) -> float:
        return float(self.metrics[self.primary])


class Domain(abc.ABC):
    """A business domain: data, scorer, segments and default guardrails."""

    name: ClassVar[str]
    columns: ClassVar[Columns]
    primary: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    guardrails: ClassVar[tuple[GuardrailSpec, ...]] = ()
    constants: ClassVar[tuple[str, ...]] = ()  # module constants of policy.py the scorer reads
    leakage_exempt: ClassVar[tuple[str, ...]] = ()  # core columns that may predict the label strongly
    scoring: ClassVar[type[ScoringSettings]] = ScoringSettings  # the config's `scoring:` section
    import_keys: ClassVar[ImportKeys] = ImportKeys((), ())
    demo: ClassVar[DemoSettings]
    variants: ClassVar[Mapping[str, str]] = {}  # `ratchet init --variant NAME` -> a shipped policy file in the package
    shadow: ClassVar[ShadowSettings] = ShadowSettings(False, "this domain does not say how its outcomes arrive")

    def acted(self, decisions: Decisions) -> np.ndarray:
        """Per row, whether the decision acts against the event (blocks it); only read when `shadow.blocks`."""
        return np.zeros(len(decisions.values), dtype=bool)

    # --- data -------------------------------------------------------------------------------
    @abc.abstractmethod
    def generate(self, seed: int, size: int) -> pd.DataFrame:
        """Seeded synthetic data of about `size` rows, sorted by time."""

    def continue_population(self, seed: int, size: int, *, start: pd.Timestamp, days: float,
                            live_seed: int) -> pd.DataFrame | None:
        """Later events of the world `generate(seed, size)` drew: the same entities (ids, profiles), `days` days from
        `start`, drawn with `live_seed`, sorted by time; their ids may repeat the generated ones (the caller renumbers
        them). None (the default) when the domain cannot continue its world: `ratchet events` then draws a new one."""
        return None

    @abc.abstractmethod
    def load(self, file: Path, mapping: Mapping[str, str], reading: Any = None) -> pd.DataFrame:
        """Read a user's CSV/Parquet and map its columns onto the domain's names; `reading` (a
        domains._importing.TimeReading) says how a numeric time column is read. Notes on how the file
        was read are in `frame.attrs["import_notes"]`."""

    @abc.abstractmethod
    def check_contract(self, frame: pd.DataFrame, *, source: str) -> None:
        """Validate `frame` against the domain's data contract; raise RatchetError naming
        column, expectation and failing row count."""

    def contract_suite(self, frame: pd.DataFrame) -> dict[str, Any]:
        """The Great Expectations suite `check_contract` applies to `frame`, as JSON (written to the workspace
        at init, bound with the seal, and applied to every later batch with domains._gx.check_suite)."""
        raise NotImplementedError(f"domain {self.name!r} does not export its data contract")

    # --- scoring ----------------------------------------------------------------------------
    def prepared(self, train: pd.DataFrame, params: Mapping[str, Any]) -> "Domain":
        """The scorer with any state it fits on train (pricing's outcome model); by default itself.

        Fitted by the scorer in the parent, never by a policy, and deterministic in the train rows."""
        return self

    @abc.abstractmethod
    def check_decisions(self, decisions: Decisions, rows: pd.DataFrame, params: Mapping[str, Any]) -> str | None:
        """None when decisions for `rows` (the decision-time view) meet the output contract, else a precise
        message."""

    @abc.abstractmethod
    def score(self, rows: pd.DataFrame, decisions: Decisions, params: Mapping[str, Any], *,
              detail: bool = True) -> ScoreReport:
        """Score decisions on `rows` (which include the label and outcome-only columns).

        With `detail=False` only the primary and guardrail metrics are needed (no segments)."""

    def support_limits(self, params: Mapping[str, Any]) -> Mapping[str, float] | None:
        """For a domain scored by off-policy estimates, the `support` guard's limits (guards.support.check_support
        keywords, read from `params`); None when decisions are scored directly."""
        return None

    @abc.abstractmethod
    def segment_of(self, rows: pd.DataFrame) -> Mapping[str, np.ndarray]:
        """Segment family -> the segment name of each row."""

    @abc.abstractmethod
    def trace(self, rows: pd.DataFrame, decisions: Decisions, params: Mapping[str, Any], limit: int = 20,
              report: ScoreReport | None = None) -> dict[str, Any]:
        """A bounded, JSON-able summary of errors on dev rows, for proposers (`report`: already scored)."""

    # --- files ------------------------------------------------------------------------------
    @property
    def package_dir(self) -> Path:
        import importlib

        file = importlib.import_module(type(self).__module__).__file__
        assert file is not None, "a domain is a module in a file"
        return Path(file).parent

    @property
    def baseline_policy(self) -> Path:
        return self.package_dir / "policy.py"

    @property
    def program(self) -> Path:
        return self.package_dir / "program.md"

    def scorer_sources(self) -> list[Path]:
        """Files whose content defines how this domain is scored (hashed at seal)."""
        return sorted(p for p in self.package_dir.glob("*.py") if not p.name.startswith("policy"))  # policies are not scorers

    def policy_view(self, frame: pd.DataFrame, *, with_label: bool) -> pd.DataFrame:
        return frame[self.columns.policy_columns(frame, with_label=with_label)]
