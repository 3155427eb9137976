"""`ratchet config`: a settings change is a recorded, approved event, never a silent edit of ratchet.yaml.

The change is validated as a whole config, committed in the workspace's git, and written to the ledger with
the old and new values, the approver and the reason; the ledger entry binds the new file's sha256, so the
next `try`/`run` and the audit hold ratchet.yaml to it. Settings that define what was sealed or how the
holdout answers are refused: changing them would re-define a verdict already given.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from holdout import evidence
from holdout.entries import ConfigChange
from holdout.ledger import Kind, Ledger
from optimizer.base.errors import IntegrityError, RatchetError
from optimizer.workspace import approvers
from optimizer.workspace.config import closest, dump_config, load_config, parse_config
from optimizer.workspace.layout import Workspace
from optimizer.workspace.runner import exclusive

# What the seal and the verdicts already given depend on: change them with a new workspace (or a reseal).
FROZEN = {"domain": "the domain is the workspace", "seed": "splits and canaries were drawn from it",
          "data": "the data was sealed", "split": "the splits were sealed", "seal": "the holdout was sealed with it",
          "gate": "the holdout's answers were calibrated with it (a reseal starts a fresh holdout)",
          "scoring": "the champion's metrics and gate answers were measured with it"}


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE is read as YAML (0.01, true, [a, b], null)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RatchetError(f"config set {item!r}: expected KEY=VALUE, e.g. guardrails.alert_rate.margin=0.004.")
        try:
            out[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise RatchetError(f"config set {item!r}: the value is not valid YAML; quote it.") from None
    return out


def _settings(data: Any, prefix: str = "") -> list[str]:
    """Every dotted setting of a config mapping, sections and leaves (a list's items are one setting)."""
    if not isinstance(data, dict):
        return []
    out = []
    for name, value in data.items():
        out += [f"{prefix}{name}", *_settings(value, f"{prefix}{name}.")]
    return out


def _shown(value: Any) -> str:
    """A value as it was written on the command line (YAML)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _unknown(data: dict[str, Any], key: str) -> RatchetError:
    """`config set KEY`: no such setting, with the closest one (`did you mean ...?`) when one is close."""
    settings = _settings(data)
    meant = closest(key, [k for k in settings if k.count(".") == key.count(".")]) or closest(key, settings)
    return RatchetError(f"config set {key}: no such setting" + (f"; did you mean {meant}?" if meant else
                                                                 "; `ratchet config DIR show` prints every setting."))


def _apply(data: dict[str, Any], key: str, value: Any) -> Any:
    """Set a dotted key; returns the old value. Only guardrails may gain keys (a metric's first override)."""
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        if not isinstance(node, dict) or (part not in node and parents[0] != "guardrails"):
            raise _unknown(data, key)
        node = node.setdefault(part, {})
    if not isinstance(node, dict) or (leaf not in node and parents[:1] != ["guardrails"]):
        raise _unknown(data, key)
    old = node.get(leaf)
    node[leaf] = value
    return old


@exclusive
def change_config(path: Path, assignments: dict[str, Any], *, approved_by: str, reason: str) -> dict[str, Any]:
    """Validate, commit and record one change; returns {key: {old, new}}. The approver and the reason are recorded
    as optimizer.workspace.approvers reads them (trimmed; refused without a visible character)."""
    ws = Workspace.open(path)
    approved_by = approvers.approver(approved_by, "the config change")
    reason = approvers.reason(reason, required=True)
    if not assignments:
        raise RatchetError("config set: name at least one KEY=VALUE.")
    for key in assignments:
        top = key.split(".")[0]
        if top in FROZEN:
            raise RatchetError(f"config set {key}: '{top}' cannot change in a sealed workspace ({FROZEN[top]}).")
    ledger = Ledger(ws.ledger)
    problems = evidence.verify(ws.root, ledger.entries(), only=(evidence.CONFIG,))
    if problems:
        raise IntegrityError(f"{ws.config}: refused, the config differs from the last recorded one: {problems[0]}")
    current = load_config(ws.config)
    data = copy.deepcopy(current.model_dump(mode="json"))
    changes = {}
    for key, value in assignments.items():
        old = _apply(data, key, value)
        if old != value:
            changes[key] = {"old": old, "new": value}
    if not changes:
        raise RatchetError("config set: every value is already set; nothing changes.")
    new = parse_config(data, source="config set", hint="",  # a problem names the KEY=VALUE, never the YAML
                       given={k: f"config set {k}={_shown(v)}" for k, v in assignments.items()})
    ws.config.write_text(dump_config(new))
    summary = ", ".join(f"{k}={v['new']!r}" for k, v in changes.items())
    ws.git("add", evidence.CONFIG)
    ws.git("commit", "-q", "-m", f"config: {summary} (approved by {approved_by}: {reason})")
    ledger.append(Kind.CONFIG, ConfigChange(changes=changes, approved_by=approved_by, reason=reason, commit=ws.head(),
                                            evidence=evidence.bind(ws.root, [evidence.CONFIG])).to_payload())
    return changes
