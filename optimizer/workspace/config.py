"""Run configuration: YAML validated by pydantic; unknown keys and wrong types are refused."""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from domains import DEFAULT_DOMAIN, DOMAINS, _source, domain_class
from optimizer.base.errors import RatchetError
from optimizer.workspace.config_words import (  # noqa: F401 (closest: used by config set)
    closest,
    friendly,
    given_as,
    problem,
)


class _Strict(BaseModel):
    """Unknown keys refused; every float finite (NaN and infinity refused, so a limit can never be vacuous)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit
DAY_S = 86_400.0
BIG = 1e12  # the largest amount in a metric's or a currency's units: finite sums and products stay finite


class DataConfig(_Strict):
    source: Literal["generate", "file"] = "generate"
    rows: int = Field(300_000, ge=1_000, le=20_000_000)
    seed: int = Field(0, ge=0, le=SEED_MAX)
    file: str | None = None
    mapping: dict[str, str] = Field(default_factory=dict)
    time_unit: Literal["auto", "s", "ms", "us", "ns"] = "auto"  # a numeric time column's unit (auto: detected)
    epoch: str | None = None  # the date a numeric time counts from (None: the Unix epoch, or detected)
    # how a text time column is written, in strptime codes ("%d/%m/%Y %H:%M") or ISO8601; None: detected from the
    # whole column. init records the format it read with, and reseal reads new data with it.
    time_format: str | None = None


class SplitConfig(_Strict):
    """Fractions of the time range; gaps keep neighbouring splits apart in time."""

    train: float = Field(0.6, gt=0, lt=1)
    dev: float = Field(0.2, gt=0, lt=1)
    holdout: float = Field(0.2, gt=0, lt=1)
    # days left out between neighbouring splits, or auto: init records min(1 day, 1 % of the data's span) instead
    gap_days: Union[float, Literal["auto"]] = "auto"

    @field_validator("gap_days", mode="before")
    @classmethod
    def _gap_days(cls, value: Any) -> Any:
        """A finite number of days >= 0 (a numeric string too, as YAML may quote it) or the word auto."""
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        number = float("nan")
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                number = float(value)
            except (ValueError, OverflowError):
                pass
        if not (math.isfinite(number) and 0 <= number <= 3650):
            raise ValueError(f"expected a finite number of days in [0, 3650], or auto; got {value!r}")
        return number

    @model_validator(mode="after")
    def _sums_to_one(self) -> "SplitConfig":
        total = self.train + self.dev + self.holdout
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + dev + holdout must be 1.0, got {total:g}")
        return self


class SealConfig(_Strict):
    canaries: int = Field(8, ge=1, le=1000)
    drift_watch: float = Field(0.1, gt=0, le=100)  # PSI
    drift_alarm: float = Field(0.25, gt=0, le=100)
    leakage_threshold: float = Field(0.98, gt=0.5, le=1.0)
    max_overlap_rows: int = Field(0, ge=0, le=1_000_000_000)


class SandboxConfig(_Strict):
    budget_s: float = Field(60.0, gt=0, le=DAY_S)  # wall clock per phase: at most a day
    memory_mb: int = Field(4096, ge=256, le=4_194_304)  # at most 4 TB


class GuardrailConfig(_Strict):
    """Overrides one of the domain's guardrails; a key left out (or null) keeps the domain's value. The kind is
    the domain's (given here, it must match): capacity and fairness take a limit, harm a tolerance (vs the
    original baseline, in the metric's units), a margin (vs the champion, relative) and optionally a limit."""

    kind: Literal["capacity", "harm", "fairness"] | None = None
    limit: float | None = Field(None, ge=-BIG, le=BIG)  # absolute bound
    tolerance: float | None = Field(None, ge=0, le=BIG)  # harm: worst change vs the original baseline
    margin: float | None = Field(None, ge=0, le=BIG)  # harm: worst change vs the current champion, relative

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "floor" in data:
            raise ValueError("floor is now tolerance (harm guardrails: worst change vs the original baseline, in "
                             "the metric's units) or limit (capacity and fairness: an absolute bound); replace the key")
        return data


def merged_guardrails(specs, overrides: "dict[str, GuardrailConfig]", domain: str) -> list:
    """The domain's GuardrailSpecs with the config's overrides; ValueError naming guardrails.<metric> and the
    fix for an unknown metric, a different kind or a key the kind does not take."""
    from dataclasses import replace

    known = {s.metric: s for s in specs}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"guardrails.{unknown[0]}: {domain} has no guardrail {unknown[0]!r}; its guardrails are "
                         f"{', '.join(f'{m} ({s.kind})' for m, s in known.items()) or 'none'}")
    out = []
    for spec in specs:
        override = overrides.get(spec.metric)
        given = override.model_dump(exclude_none=True) if override else {}
        if given.get("kind", spec.kind) != spec.kind:
            raise ValueError(f"guardrails.{spec.metric}.kind: {spec.metric} is a {spec.kind} guardrail of {domain}, "
                             f"not {given['kind']}; remove the kind or set it to {spec.kind}")
        try:
            out.append(replace(spec, **given))
        except ValueError as exc:
            raise ValueError(f"guardrails.{spec.metric}: {exc}") from None
    return out


class GateConfig(_Strict):
    """The holdout gate. lord (default): each candidate that passed the dev guards is one holdout test of its gain
    over the champion, at the level LORD++ gives it, so the run's false-discovery rate stays under `fdr`;
    budget counts tests. thresholdout: Thresholdout with a Ladder step; threshold_se, sigma_se and step_se are
    multiples of the holdout gain's standard error (over the reference; the step's over the champion), measured
    per query; budget counts overflows. not_worse: tolerance in metric units."""

    kind: Literal["lord", "not_worse", "thresholdout"] = "lord"
    fdr: float = Field(0.05, gt=0, lt=1)  # lord: the false-discovery rate over the run's keeps
    threshold_se: float = Field(1.0, ge=0, le=1000)  # T: dev and holdout gains agree within this many standard errors
    sigma_se: float = Field(0.1, ge=0, le=1000)  # Laplace noise scale (the threshold's own noise is 4 x this)
    step_se: float = Field(2.0, ge=0, le=1000)  # a new champion's answer must beat the champion's by this much
    budget: int = Field(100, ge=1, le=1_000_000)
    tolerance: float = Field(0.0, ge=0, le=BIG)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        old = [k for k in ("threshold", "sigma") if isinstance(data, dict) and k in data]
        if old:
            raise ValueError("; ".join(f"{k} (metric units) is now {k}_se, in standard errors of the gain (default "
                                       f"{cls.model_fields[k + '_se'].default})" for k in old) + "; replace the key")
        return data


class DecisionConfig(_Strict):
    min_effect: float = Field(0.0, ge=0, le=BIG)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    # screen: every experiment's dev test at `confidence` (the gate's holdout stream controls the run's error);
    # spending / bonferroni: the confidence tightens with every experiment (for a gate that controls nothing).
    looks: Literal["screen", "spending", "bonferroni", "none"] = "screen"
    bootstrap: int = Field(1000, ge=100, le=1_000_000)
    segment_tolerance: float = Field(0.05, ge=0, le=BIG)
    segment_min_rows: int = Field(200, ge=10, le=1_000_000_000)
    refits: int = Field(3, ge=0, le=20)  # refits of each champion on 90 % of train: its training noise (0: off)
    parity: int = Field(64, ge=1, le=10_000)  # dev events the parity guard decides one at a time, as serve does


def _tagged_scoring(name: str) -> type[BaseModel]:
    """A domain's scoring model with a `domain` tag, so the config's `scoring:` section is read by its own model."""
    base = domain_class(name).scoring
    # Literal of a name known only at run time: no static type says it
    return create_model(base.__name__, __base__=base, domain=(Literal[name], name))  # type: ignore[arg-type]


# Every registered domain's scoring model, told apart by the `domain` tag (the section's location in an error names
# the domain: scoring.pricing.decline_cost).
_SCORING = tuple(_tagged_scoring(name) for name in DOMAINS)
if TYPE_CHECKING:
    class ScoringConfig(BaseModel):
        """For mypy: the run-time union below (one scoring model per domain, each tagged with its domain)."""

        domain: str
else:
    ScoringConfig = Annotated[Union[_SCORING], Field(discriminator="domain")] if len(_SCORING) > 1 else _SCORING[0]


class AgentPrices(_Strict):
    """USD per million tokens, as the provider prices the model (used to turn reported usage into spend)."""

    input: float = Field(3.0, ge=0, le=1e6)
    output: float = Field(15.0, ge=0, le=1e6)
    cache_write: float = Field(3.75, ge=0, le=1e6)
    cache_read: float = Field(0.30, ge=0, le=1e6)


class AgentConfig(_Strict):
    """The meta-agent proposer (`--proposer anthropic`)."""

    model: str = "claude-sonnet-5-5"
    max_tokens: int = Field(4096, ge=256, le=1_000_000)  # per model response
    max_steps: int = Field(8, ge=1, le=50)  # model turns per proposal (tool calls and feedback included)
    spend_cap_usd: float = Field(5.0, gt=0, le=1e9)  # for the workspace, across runs, from the usage the API reports
    batch: int = Field(1, ge=1, le=16)  # proposals drafted per round, each with its own hypothesis
    max_retries: int = Field(4, ge=0, le=10)  # on rate limits (429), overload (529) and server errors
    timeout_s: float = Field(120.0, gt=0, le=DAY_S)
    trace_chars: int = Field(12_000, ge=1_000, le=10_000_000)  # at most this much of one trace goes into a prompt
    history: int = Field(30, ge=1, le=100_000)  # earlier experiments summarized into each prompt
    prices_per_mtok: AgentPrices = AgentPrices()


class TaskAgentConfig(_Strict):
    """The model broker for policies that ask a language model (`ratchet init routing --variant llm`)."""

    enabled: bool = False  # when true, policy.py may import ratchet_llm; runs need ANTHROPIC_API_KEY
    model: str = "claude-haiku-4-5"
    max_requests: int = Field(5000, ge=1, le=100_000_000)  # sent to the model per sandbox phase (cached: free)
    max_tokens: int = Field(1024, ge=16, le=1_000_000)  # per response; a request may ask for less
    max_request_chars: int = Field(60_000, ge=1_000, le=100_000_000)  # system prompt plus messages, per request
    timeout_s: float = Field(30.0, gt=0, le=DAY_S)  # per request, and never beyond the phase's budget
    max_retries: int = Field(2, ge=0, le=10)  # rate limits, overload, server errors (the SDK's backoff)
    spend_cap_usd: float = Field(10.0, gt=0, le=1e9)  # for the workspace, across runs, from the API's usage
    trace_exchanges: int = Field(20, ge=0, le=100_000)  # dev-only replies kept in each experiment's trace
    trace_chars: int = Field(400, ge=50, le=1_000_000)  # characters kept per reply (and per ticket text beside it)
    prices_per_mtok: AgentPrices = AgentPrices(input=1.0, output=5.0, cache_write=1.25, cache_read=0.10)


class ShadowConfig(_Strict):
    """When a shadow trial passes (`ratchet shadow report`)."""

    min_labeled: int = Field(1000, ge=1, le=1_000_000_000)  # settled events needed before a verdict (fewer: pending)
    # ... and settled events on which the two differ (a nonzero paired difference): the sequence's variance comes from
    # them, and a handful of heavy-tailed ones can look like none (benchmarks/shadow_peeking.py)
    min_changed: int = Field(10, ge=1, le=1_000_000_000)
    # "not worse": the challenger's primary may trail by this much, with confidence
    margin: float = Field(0.0, ge=0, le=BIG)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    max_p99_ms: float = Field(50.0, gt=0, le=DAY_S * 1000)  # decision latency per event, 99th percentile
    batch: int = Field(500, ge=1, le=10_000_000)  # events decided per sandbox call, in time order
    # events each policy also decides one per call, as serve calls it: latency
    latency_sample: int = Field(200, ge=0, le=10_000_000)
    # The known share of stopped (blocked) events a review labels, or None when unknown (the report then bounds the
    # unlabelled ones by the worst and the best case and passes only on the worst).
    review_rate: float | None = Field(None, gt=0, le=1)
    cost_range: tuple[float, float] = (0.25, 4.0)  # factors of the decline cost the report checks the verdict over

    @field_validator("cost_range")
    @classmethod
    def _cost_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        """Two factors with 0 <= low <= high <= 1e6 (finiteness is the model's)."""
        low, high = value
        if not 0 <= low <= high <= 1e6:
            raise ValueError(f"expected two factors 0 <= low <= high <= 1e6, got {list(value)}")
        return value


class StaticConfig(_Strict):
    allowed_imports: list[str] = Field(
        default_factory=lambda: [
            "numpy", "pandas", "scipy", "sklearn", "xgboost", "math", "statistics",
            "collections", "functools", "itertools", "dataclasses", "typing", "__future__",
        ]
    )
    max_literal_len: int = Field(2000, ge=10, le=10_000_000)
    max_collection_items: int = Field(200, ge=1, le=10_000_000)
    # a larger policy.py is refused before it is parsed (parsing costs time and memory in the parent)
    max_policy_bytes: int = Field(_source.DEFAULT_MAX_BYTES, ge=10_000, le=_source.MAX_BYTES_CEILING)


class TrackingConfig(_Strict):
    """What a run does when MLflow stops answering mid-run: continue (the ledger and experiments/ record everything;
    the missed runs are written once it answers again, or by `ratchet sync`) or stop (cleanly, after the record)."""

    on_outage: Literal["continue", "stop"] = "continue"


class RunConfig(_Strict):
    domain: str = DEFAULT_DOMAIN  # a registered domain (domains/<name>/)
    seed: int = Field(0, ge=0, le=SEED_MAX)
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    seal: SealConfig = SealConfig()
    sandbox: SandboxConfig = SandboxConfig()
    scoring: ScoringConfig  # the domain's own section (defaults filled in from the domain's model)
    decision: DecisionConfig = DecisionConfig()
    guardrails: dict[str, GuardrailConfig] = Field(default_factory=dict)
    gate: GateConfig = GateConfig()
    static: StaticConfig = StaticConfig()
    agent: AgentConfig = AgentConfig()
    task_agent: TaskAgentConfig = TaskAgentConfig()
    shadow: ShadowConfig = ShadowConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="before")
    @classmethod
    def _scoring_follows_domain(cls, data: Any) -> Any:
        """`scoring` is the domain's own section: tag it with the domain so the right model reads it."""
        if isinstance(data, dict):
            domain = data.get("domain", DEFAULT_DOMAIN)
            if domain not in DOMAINS:
                raise ValueError(f"domain: unknown domain {domain!r}; set domain to one of {', '.join(DOMAINS)}")
            scoring = data.get("scoring")
            if scoring is None or isinstance(scoring, dict):
                data = {**data, "scoring": {"domain": domain, **(scoring or {})}}
        return data

    @model_validator(mode="after")
    def _scoring_matches(self) -> "RunConfig":
        if self.scoring.domain != self.domain:
            raise ValueError(f"scoring.domain is {self.scoring.domain!r} but domain is {self.domain!r}")
        merged_guardrails(domain_class(self.domain).guardrails, self.guardrails, self.domain)
        if "ratchet_llm" in self.static.allowed_imports and not self.task_agent.enabled:
            raise ValueError("static.allowed_imports names ratchet_llm but task_agent.enabled is false")
        return self


def parse_config(data: dict[str, Any], *, source: str, given: dict[str, str] | None = None,
                 hint: str = "Fix the YAML and retry.") -> RunConfig:
    """A validated config; RatchetError naming each problem. `given` maps the dotted settings a person gave outside
    the YAML (a command-line flag, `ratchet config set`) to how they gave them ("--rows 50"): a problem with one of
    them names that, what is allowed and the closest valid value, and the YAML `hint` is left out unless another
    problem comes from the file."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
    given = given or {}
    mine, theirs = [], []
    for error in errors:
        loc = tuple(error["loc"])
        how = given_as(loc, given) if loc else None
        if how is None:
            theirs.append(problem(error, RunConfig))
        else:
            mine.append(f"{how}: {friendly(error, loc, RunConfig)}")
    mine = list(dict.fromkeys(mine))  # one flag may set two settings (--seed)
    problems = "; ".join([*mine, *theirs])
    problems += "" if problems.endswith("?") else "."
    if not theirs:
        raise RatchetError(problems) from None
    raise RatchetError(f"{source}: invalid configuration: {problems}" + (f" {hint}" if hint else "")) from None


def read_yaml(path: Path) -> dict[str, Any]:
    """A config file's settings as a mapping (not yet validated)."""
    path = Path(path)
    if not path.is_file():
        raise RatchetError(f"{path}: configuration file not found. Pass an existing YAML file.")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RatchetError(f"{path}: not UTF-8 text (byte {exc.start}); save the configuration as UTF-8.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RatchetError(f"{path}: not valid YAML{where} ({what}). Fix the syntax and retry.") from None
    if data is None:
        raise RatchetError(f"{path}: the file is empty (no settings); write the settings to change, or leave the "
                           "file out to use the shipped defaults.")
    if not isinstance(data, dict):
        raise RatchetError(f"{path}: the top level must be a mapping of settings, got {type(data).__name__}.")
    return data


def load_config(path: Path) -> RunConfig:
    return parse_config(read_yaml(path), source=str(path))


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def default_config_path(domain: str) -> Path:
    """The shipped config for a domain: configs/<domain>.yaml, package data of the `configs` package (found with
    importlib.resources, so it works from a wheel install as well as from the repository)."""
    from importlib.resources import files

    path = files("configs") / f"{domain}.yaml"
    if not isinstance(path, Path):  # a zip or namespace install: the YAML is not a plain file on disk
        raise RatchetError(f"the shipped configs are not a folder on disk ({path!r}); reinstall ratchet-loop "
                           "from a wheel or the repository, or pass --config FILE.")
    return path
