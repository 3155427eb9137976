"""Everything an experiment needs from the workspace, loaded and verified once per session."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar, cast

import numpy as np
import pandas as pd

from domains import Domain, get_domain
from holdout import evidence, queries, scorer, upgrades
from holdout.hashing import sha256_file
from holdout.ledger import Entry, Kind, Ledger, verify_chain
from holdout.lineage import head_problem
from holdout.manifest import manifest_sha256, read_manifest
from optimizer import __version__
from optimizer.base.errors import IntegrityError
from optimizer.records.policy_state import PolicyState
from optimizer.workspace.config import RunConfig, load_config
from optimizer.workspace.layout import Workspace, policy_at

T = TypeVar("T")


@dataclass
class Context:
    """Everything one session judges with, read once: the workspace, its config and domain (prepared on train),
    the sealed manifest, the splits (holdout with and without its canaries), the ledger and where the installed
    scorer lives, plus what loading repaired and values computed once per session (`memo`).

    Built only by `load_context`, which hands it over verified: the ledger's hash chain intact, git HEAD the last
    kept commit, the holdout files and manifest as sealed, the splits, config and cached states bound to the
    ledger, and the installed scorer the one in force (`ratchet upgrade` alone skips that last check); a keep a stop
    interrupted is completed or rolled back first (`repaired` says what was done), or, for a read-only caller,
    refused. "Verified" holds for that moment only: every experiment calls `verify` again on what can change in
    between (HEAD, the cached states, the holdout, the seal and the scorer)."""

    ws: Workspace
    config: RunConfig
    domain: Domain
    manifest: dict[str, Any]
    manifest_sha256: str
    train: pd.DataFrame
    dev: pd.DataFrame
    holdout: pd.DataFrame  # canaries removed: the rows that are scored
    holdout_all: pd.DataFrame  # canaries included: the rows a policy decides on
    canary_mask: np.ndarray
    ledger: Ledger
    scorer_root: Path
    repaired: str | None = None  # what loading it repaired (a keep a stop interrupted), if anything
    _memo: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False)  # name -> (key, value)

    def memo(self, name: str, key: Any, compute: Callable[[], T]) -> T:
        """`compute()` once per `key` under `name` in this session (only the latest key of a name is kept)."""
        held = self._memo.get(name)
        if held is None or held[0] != key:
            held = self._memo[name] = (key, compute())
        return cast(T, held[1])

    def dev_segments(self) -> Mapping[str, np.ndarray]:
        """The domain's segment of every dev row, per family."""
        return self.memo("dev_segments", None, lambda: self.domain.segment_of(self.dev))

    @property
    def champion_dir(self) -> Path:
        return self.ws.root / "champion"

    @property
    def baseline_dir(self) -> Path:
        return self.ws.root / "baseline"

    def champion(self) -> PolicyState | None:
        return PolicyState.load(self.champion_dir)

    def baseline(self) -> PolicyState | None:
        return PolicyState.load(self.baseline_dir)

    @property
    def reference_dir(self) -> Path:
        return self.ws.root / "reference"

    def reference(self) -> PolicyState | None:
        """What the holdout gate measures gains against: the baseline, or the champion at the last reseal."""
        return PolicyState.load(self.reference_dir) or self.baseline()

    def holdout_ids(self) -> frozenset[str]:
        """The holdout's ids in comparable form (for contamination checks), computed once per session."""
        from guards.contamination import id_keys

        return self.memo("holdout_ids", None, lambda: id_keys(self.holdout[self.domain.columns.id].tolist()))

    def dev_values(self) -> Any:
        """The dev rows' feature values (guards.contamination.RowValues: not ids, time, entity, label or columns a
        policy never sees), indexed for contamination checks once per session."""
        from guards.contamination import row_values

        def compute() -> Any:
            cols = self.domain.columns
            skip = {cols.id, cols.time, cols.label, cols.entity, *cols.train_only, *cols.outcome_only}
            return row_values(self.dev, [c for c in cols.policy_columns(self.dev, with_label=False) if c not in skip])

        return self.memo("dev_values", None, compute)

    def gates(self, entries: list[Entry] | None = None) -> list[Entry]:
        """Holdout answers given under the current seal (a reseal starts a fresh budget)."""
        entries = self.ledger.entries() if entries is None else entries
        return [e for e in queries.since_latest_seal(entries) if e.kind == Kind.GATE]  # typed: queries.gates

    def verify(self, entries: list[Entry] | None = None, *, full: bool = False, sources: bool = True) -> list[str]:
        """Integrity before scoring: HEAD as the last kept commit, holdout file, manifest
        vs ledger, the installed scorer vs the one in force (`sources`), and the verdict inputs bound to the ledger.
        Splits and config are read once per session, so they are checked with `full` (at load); the cached states
        are read again by every experiment, so they always are."""
        entries = self.ledger.entries() if entries is None else entries
        head = self.ws.head()
        wrong = head_problem(self.ws.root, head, entries, policy_at(self.ws.root, head))
        problems = [wrong] if wrong else []
        problems += evidence.verify(self.ws.root, entries, only=None if full else tuple(f"{d}/" for d in evidence.STATE_DIRS))
        for name, expected in self.manifest["files"].items():
            actual = sha256_file(self.ws.holdout_dir / name)
            if actual != expected:
                problems.append(f"holdout/{name}: sha256 {actual[:12]} != sealed {expected[:12]}")
        seal = queries.seals(entries)
        current = manifest_sha256(read_manifest(self.ws.holdout_dir))
        if not seal or queries.sealed(seal[-1]).manifest_sha256 != current:
            problems.append(f"holdout/MANIFEST.json sha256 {current[:12]} does not match the ledger's seal entry")
        if sources:
            problems += self.scorer_problems(entries)
        return problems

    def in_force(self, entries: list[Entry] | None = None) -> upgrades.Span:
        """The scorer sources in force: the seal's, or the last upgrade's since."""
        return upgrades.in_force(self.ledger.entries() if entries is None else entries, self.manifest)

    def scorer_problems(self, entries: list[Entry] | None = None) -> list[str]:
        """The installed scorer against the one in force, with what to do when they differ."""
        span = self.in_force(entries)
        installed = scorer.hashes(self.domain, self.scorer_root)
        if installed == dict(span.sources or {}):
            return []
        back = (f"or install ratchet {span.version} again" if span.version != __version__ else
                f"or restore the installed ratchet {__version__}'s files (same version: they were edited in place)")
        return [f"the installed scorer (ratchet {__version__}) is not the one in force since {span.name}: "
                f"{scorer.describe(span.sources or {}, installed)}. Run `ratchet upgrade {self.ws.root} --approved-by "
                f"NAME --reason TEXT` to replay the kept policies under the installed code and record the upgrade, "
                f"{back}"]


def chain_problems(ledger: Ledger, entries: list[Entry], root: Path) -> list[str]:
    """The first break in the ledger's hash chain, as one line naming the ledger and the audit; none when intact
    (appending to a broken chain would hide the break behind valid-looking entries)."""
    broken = verify_chain(entries)
    return [f"{ledger.path}: hash chain broken ({broken[0]}); nothing is judged or appended until it is restored: "
            f"run `ratchet audit {root}`"] if broken else []


def load_context(path: Path, *, repair: bool = True, sources: bool = True) -> Context:
    """The workspace, verified. `repair`: first complete or roll back a keep a stop interrupted, holding the runner
    lock (WorkspaceBusy while another command writes the workspace); an auditor's read-only replay and the server
    pass False and are refused on an interrupted keep instead. `sources`: hold the installed scorer to the one in
    force (only `ratchet upgrade`, which replays under the installed code before it records it, passes False)."""
    ws = Workspace.open(path)
    config = load_config(ws.config)
    domain = get_domain(config.domain)
    manifest = read_manifest(ws.holdout_dir)
    ledger = Ledger(ws.ledger)
    try:
        holdout_all = pd.read_parquet(ws.holdout_dir / next(iter(manifest["files"])))
    except (PermissionError, FileNotFoundError) as exc:
        raise IntegrityError(f"{ws.holdout_dir}: holdout unreadable ({exc.strerror}). Run `ratchet audit {path}`.") from None
    ids = domain.columns.id
    broken = chain_problems(ledger, ledger.entries(), ws.root)  # before a repair appends anything
    if broken:
        raise IntegrityError(broken[0])
    canary_mask = holdout_all[ids].astype(str).isin(set(manifest["canaries"])).to_numpy()
    train = pd.read_parquet(ws.data_dir / "train.parquet")
    ctx = Context(
        ws=ws, config=config, domain=domain.prepared(train, config.scoring.model_dump()), manifest=manifest,
        manifest_sha256=manifest_sha256(manifest), train=train, dev=pd.read_parquet(ws.data_dir / "dev.parquet"),
        holdout=holdout_all[~canary_mask].reset_index(drop=True), holdout_all=holdout_all,
        canary_mask=canary_mask, ledger=ledger, scorer_root=scorer.root(),
    )
    from optimizer.records.recovery import reconcile
    from optimizer.workspace.runner import runner_lock

    if repair:  # under the runner lock: a keep another process is making now is not an interrupted one
        with runner_lock(ws.root):
            ctx.repaired = reconcile(ctx)  # a keep a stop interrupted is completed or rolled back before anything is verified
            problems = ctx.verify(full=True, sources=sources)
    else:
        problems = ctx.verify(full=True, sources=sources)
    if problems:
        raise IntegrityError(f"{path}: integrity check failed: {'; '.join(problems)}. Run `ratchet audit {path}`.")
    return ctx
