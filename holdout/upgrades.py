"""The ledger in spans: which scorer sources judged each entry, and what each `ratchet upgrade` proved.

A seal (or reseal) puts the scorer sources its manifest hashed in force; an `upgrade` entry replaces them with the
installed code's, after replaying the kept policies under it. Each entry of the ledger belongs to the span of the
last seal or upgrade before it. The audit holds each upgrade to the span before it (it must start from the sources
then in force), to the ledger (the figures it says it compared against are the ones the ledger held) and to itself
(an upgrade that says "identical" reproduced every figure); the installed code is held to the last span.

`expected` is the one rule for what a policy must reproduce when it is replayed: its decisions' hashes and dev
metrics as the ledger last recorded them (its experiment or baseline entry, then any upgrade that replayed it),
holdout decisions only on the holdout in place.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from domains import get_domain
from domains.errors import RatchetError
from holdout import queries, scorer
from holdout.entries import Upgrade, view
from holdout.hashing import canonical_json, sha256_bytes, sha256_file
from holdout.ledger import Entry, Kind
from holdout.lineage import RETIRED, retired_folders
from holdout.manifest import manifest_sha256, read_manifest
from holdout.queries import SEALS
from holdout.scorer import describe

REL_TOL = 1e-9


@dataclass(frozen=True)
class Span:
    """The scorer sources in force from one seal or upgrade entry until the next."""

    start: Entry
    version: str
    sources: Mapping[str, str] | None  # None: not known (a retired seal whose manifest is gone)

    @property
    def digest(self) -> str | None:
        return None if self.sources is None else digest(self.sources)

    @property
    def name(self) -> str:
        d = self.start.data
        by = f", approved by {d.get('approved_by')}" if self.start.kind == Kind.UPGRADE else ""
        return f"{self.start.kind} entry {self.start.seq} (ratchet {self.version}{by})"


def digest(sources: Mapping[str, str]) -> str:
    """One sha256 for a set of scorer sources (what an experiment record carries)."""
    return sha256_bytes(canonical_json(dict(sources)).encode())


def in_force(entries: list[Entry], manifest: Mapping[str, Any]) -> Span:
    """The span in force now: the holdout in place's seal (`manifest`) and the upgrades after it."""
    seals = [i for i, e in enumerate(entries) if e.kind in SEALS]
    if not seals:
        raise ValueError("the ledger has no seal entry")
    span = Span(entries[seals[-1]], str(manifest.get("tool_version", "?")), dict(manifest.get("scorer_sha256", {})))
    for e in entries[seals[-1] + 1:]:
        if e.kind == Kind.UPGRADE:
            span = _upgrade_span(e)
    return span


def spans(root: Path, entries: list[Entry], manifest: Mapping[str, Any]) -> list[Span]:
    """Every span, oldest first. A retired seal's sources come from its retired manifest when it is still the one
    sealed (the `sealed_holdouts` check reports one that is not)."""
    retired = {sealed.seq: folder for sealed, _, folder in retired_folders(entries)}
    out: list[Span] = []
    seals = [e for e in entries if e.kind in SEALS]
    for e in entries:
        if e.kind in SEALS:
            found = dict(manifest) if e is seals[-1] else _retired_manifest(Path(root), e, retired.get(e.seq))
            out.append(Span(e, str(found.get("tool_version", "?")) if found else "?",
                            dict(found["scorer_sha256"]) if found and "scorer_sha256" in found else None))
        elif e.kind == Kind.UPGRADE:
            out.append(_upgrade_span(e))
    return out


def _upgrade_span(e: Entry) -> Span:
    """The span an upgrade starts: the version and sources it put in force."""
    upgrade = view(e, Upgrade)
    return Span(e, str(upgrade.to_version), dict((upgrade.sources or {}).get("new", {})))


def _retired_manifest(root: Path, sealed: Entry, folder: str | None) -> dict[str, Any] | None:
    try:
        found = read_manifest(root / RETIRED / str(folder))
    except Exception:  # noqa: BLE001 - gone or damaged: the span's sources are unknown (sealed_holdouts says why)
        return None
    return found if manifest_sha256(found) == sealed.data.get("manifest_sha256") else None


def span_of(all_spans: list[Span], seq: int) -> Span | None:
    """The span an entry belongs to."""
    return next((s for s in reversed(all_spans) if s.start.seq <= seq), None)


def same_metrics(got: Mapping[str, float], want: Mapping[str, float]) -> list[str]:
    """Each metric of `want` that `got` does not reproduce to float tolerance, as words."""
    wrong = []
    for metric, w in want.items():
        g = float(got.get(metric, math.nan))
        if not math.isclose(g, float(w), rel_tol=REL_TOL, abs_tol=1e-12):
            wrong.append(f"dev {metric} {g:.6g} != recorded {float(w):.6g}")
    return wrong


def expected(entries: list[Entry], commit: str) -> dict[str, Any]:
    """What the policy at `commit` must reproduce: {"decisions_sha256": {"dev"[, "holdout"]}, "dev_metrics"}; empty
    when the ledger recorded nothing for it. Holdout decisions count only when recorded on the holdout in place."""
    current = _current_seal(entries)
    want: dict[str, Any] = {}
    commits: dict[str, str] = {}  # experiment -> commit (a champion refresh names the experiment)
    for e in entries:
        d = e.data if e.kind in (Kind.BASELINE, Kind.EXPERIMENT, Kind.CHAMPION_REFRESH, Kind.UPGRADE) else None
        if d is None:
            continue
        if e.kind in (Kind.BASELINE, Kind.EXPERIMENT) and d.get("commit"):
            commits[str(d.get("experiment", "baseline"))] = d["commit"]
        if e.kind == Kind.BASELINE and d.get("commit") == commit:
            _take(want, d, on_current=not any(x.kind == Kind.RESEAL for x in entries))
        elif e.kind == Kind.EXPERIMENT and d.get("kept") and d.get("commit") == commit:
            _take(want, d, on_current=(d.get("gate") or {}).get("seal") == current)
        elif (e.kind == Kind.CHAMPION_REFRESH and commits.get(str(d.get("experiment"))) == commit
              and d.get("seal") == current):
            want.setdefault("decisions_sha256", {})["holdout"] = d["decisions_sha256"]["holdout"]
        elif e.kind == Kind.UPGRADE:
            for item in d.get("replayed", ()):
                if item.get("commit") == commit:
                    _take(want, item, on_current=item.get("seal") == current)
    return want


def _take(want: dict[str, Any], record: Mapping[str, Any], *, on_current: bool) -> None:
    hashes = dict(record.get("decisions_sha256") or {})
    kept = want.get("decisions_sha256", {})
    if "dev" in hashes:
        kept = {**kept, "dev": hashes["dev"]}
    if on_current and "holdout" in hashes:
        kept = {**kept, "holdout": hashes["holdout"]}
    elif not on_current:
        kept.pop("holdout", None)
    if kept:
        want["decisions_sha256"] = kept
    if record.get("dev_metrics"):
        want["dev_metrics"] = dict(record["dev_metrics"])


def _current_seal(entries: list[Entry]) -> str | None:
    return queries.seal_in_force(entries).manifest_sha256 if queries.seals(entries) else None


def differences(replayed: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """How a replayed policy's figures differ from what it had to reproduce, as words."""
    got, need = replayed.get("decisions_sha256", {}), want.get("decisions_sha256", {})
    out = [f"{rows} decisions hash {str(got.get(rows))[:12]} != recorded {h[:12]}" for rows, h in sorted(need.items())
           if got.get(rows) != h]
    return out + same_metrics(replayed.get("dev_metrics", {}), want.get("dev_metrics", {}))


def problems(entries: list[Entry], all_spans: list[Span]) -> list[str]:
    """Every upgrade that does not follow its span, disagrees with the ledger or with itself, and every experiment
    judged under sources other than its span's."""
    out: list[str] = []
    for i, e in enumerate(entries):
        if e.kind == Kind.UPGRADE:
            out += _upgrade_problems(e, entries[:i], all_spans)
        elif e.kind == Kind.EXPERIMENT and isinstance(e.data.get("scorer"), dict):
            span = span_of(all_spans, e.seq)
            if span is not None and span.digest is not None and e.data["scorer"].get("sources_sha256") != span.digest:
                out.append(f"ledger entry {e.seq} ({e.data.get('experiment')}) was judged by scorer sources "
                           f"{str(e.data['scorer'].get('sources_sha256'))[:12]}, not those in force since {span.name}")
    return out


def _upgrade_problems(e: Entry, before: list[Entry], all_spans: list[Span]) -> list[str]:
    d, where = e.data, f"upgrade entry {e.seq}"
    prior = span_of(all_spans, e.seq - 1)
    try:
        old, replayed = d["sources"]["old"], list(d["replayed"])
        identical = bool(d["identical"])
    except (KeyError, TypeError) as exc:
        return [f"{where} is not an upgrade ratchet wrote (missing {exc})"]
    out = []
    if prior is not None and prior.sources is not None and dict(old) != dict(prior.sources):
        out.append(f"{where} starts from scorer sources that were not in force since {prior.name}: "
                   f"{describe(prior.sources, old)}")
    if prior is not None and d.get("from_version") != prior.version:
        out.append(f"{where} says it upgrades from ratchet {d.get('from_version')}, but {prior.name} was in force")
    for item in replayed:
        want = expected(before, str(item.get("commit")))
        if canonical_json(item.get("recorded") or {}) != canonical_json(want):
            out.append(f"{where}: what it held {item.get('policy')} to is not what the ledger recorded for "
                       f"commit {str(item.get('commit'))[:12]}: its figures were edited")
        moved = differences(item, item.get("recorded") or {})
        if identical and moved:
            out.append(f"{where} says the replay was identical, but {item.get('policy')}: {'; '.join(moved)}")
    if not identical and not d.get("accepted_changes"):
        out.append(f"{where} records changed decisions that nobody accepted")
    return out


def report(root: Path, entries: list[Entry], manifest: Mapping[str, Any], source_root: Path) -> tuple[bool, str]:
    """The audit's scorer check: every span as recorded, and the installed code held to the last one."""
    try:
        all_spans = spans(root, entries, manifest) if entries else []
        last = in_force(entries, manifest) if entries else None
    except (ValueError, KeyError, TypeError) as exc:
        return False, f"the ledger's seals and upgrades cannot be read ({exc})"
    now = dict(last.sources or {}) if last else dict(manifest.get("scorer_sha256", {}))
    try:
        installed = scorer.hashes(get_domain(str(manifest.get("domain"))), source_root)
    except (RatchetError, KeyError, ValueError):  # a domain this installation lacks: its sealed files as they are
        installed = {rel: sha256_file(source_root / rel) for rel in now if (source_root / rel).is_file()}
    found = problems(entries, all_spans)
    if installed != now:
        found.append(f"the installed scorer is not the one in force since {last.name if last else 'the seal'}: "
                     f"{describe(now, installed)} (run `ratchet upgrade DIR` to replay and record it)")
    if found:
        return False, "; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
    named = "; ".join(f"entries from {s.start.seq}: {s.name}" for s in all_spans)
    return True, f"{len(now)} scorer source files as in force; {len(all_spans)} span(s): {named}"
