"""A policy's stored state (the champion, the baseline, the gate's reference): its decisions on dev and holdout,
what they scored and the gate's answer when it was kept. Written by a keep, read by every experiment."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from domains import Decisions
from holdout.hashing import array_sha256


def decisions_sha256(values: Mapping[str, np.ndarray]) -> dict[str, str]:
    """What an experiment's decisions hash to, per row set (recorded in the ledger, checked by a replay)."""
    return {name: array_sha256(values[name]) for name in ("dev", "holdout")}


@dataclass(frozen=True)
class PolicyState:
    """A policy's decisions on dev and holdout and what they scored (the champion or the baseline)."""

    experiment: str
    commit: str
    dev: np.ndarray
    holdout: np.ndarray
    constants: dict[str, Any]
    dev_metrics: dict[str, float]
    reported: float  # holdout-gated gain over the original baseline (the gate's answer when it was kept)
    seal: str = ""  # the manifest its holdout decisions were made on (stale after a reseal)
    refit_sd: float = 0.0  # std of its dev primary metric over refits on subsamples of train
    # The 90 % interval of `reported` (a lord gate: the kept steps' selection-corrected intervals added end to end).
    reported_lower: float = 0.0
    reported_upper: float = 0.0

    def decisions(self, which: str) -> Decisions:
        return Decisions(self.dev if which == "dev" else self.holdout, self.constants)

    def decisions_sha256(self) -> dict[str, str]:
        return decisions_sha256({"dev": self.dev, "holdout": self.holdout})

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "dev.npy", self.dev, allow_pickle=False)
        np.save(folder / "holdout.npy", self.holdout, allow_pickle=False)
        meta = {"experiment": self.experiment, "commit": self.commit, "constants": self.constants,
                "dev_metrics": self.dev_metrics, "reported": self.reported, "seal": self.seal,
                "refit_sd": self.refit_sd, "reported_lower": self.reported_lower,
                "reported_upper": self.reported_upper}
        (folder / "state.json").write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, folder: Path) -> "PolicyState | None":
        if not (folder / "state.json").is_file():
            return None
        meta = json.loads((folder / "state.json").read_text())
        return cls(meta["experiment"], meta["commit"], np.load(folder / "dev.npy", allow_pickle=False),
                   np.load(folder / "holdout.npy", allow_pickle=False), meta["constants"], meta["dev_metrics"],
                   meta["reported"], meta.get("seal", ""), float(meta.get("refit_sd", 0.0)),
                   float(meta.get("reported_lower", meta["reported"])),
                   float(meta.get("reported_upper", meta["reported"])))
