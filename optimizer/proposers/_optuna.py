"""The offline proposer: TPE over the constants marked `# tune:` in policy.py.

The study lives in the workspace (an Optuna journal file), so a stopped run resumes where it
left off, and no point of the search is proposed twice, across restarts too. Guardrail slack is reported
as constraints (feasible when <= 0).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from guards import GuardName
from optimizer.base.errors import RatchetError
from optimizer.base.tunables import parse, rewrite, suggest
from optimizer.proposers._base import Candidate, ProposalContext, Proposer

MAX_REPEATS = 50  # asks per proposal before a repeat is accepted (a space with fewer new points than that)


def _key(params: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


class OptunaProposer(Proposer):
    name = "optuna"

    def __init__(self, study_path: Path, *, seed: int, primary: str,
                 direction: Literal["minimize", "maximize"] = "maximize") -> None:
        import optuna
        import optuna.storages.journal

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        logging.getLogger("optuna").setLevel(logging.WARNING)
        self._optuna = optuna
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(study_path)))
        self.study = optuna.create_study(study_name="ratchet", storage=storage, direction=direction,
                                         load_if_exists=True)
        # The sampler's random stream continues rather than restarts: seeded by how far the study has got, so a
        # resumed run does not walk the same startup points again (and stays reproducible).
        self.study.sampler = optuna.samplers.TPESampler(seed=seed + len(self.study.trials), n_startup_trials=8)
        self.primary = primary
        self._open: dict[int, Any] = {}
        # Trials asked but never told (an interrupted run) would bias TPE as running: close them.
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)

    def propose(self, context: ProposalContext) -> Candidate | None:
        try:
            tunables = parse(context.champion_source)
        except ValueError as exc:
            raise RatchetError(f"policy.py: bad '# tune:' marker ({exc}). Fix the marker line.") from None
        if not tunables:
            raise RatchetError("policy.py marks no constants with '# tune:'; the optuna proposer has nothing to search.")
        trial, values = self._ask_new(tunables)
        self._open[trial.number] = (trial, values)
        return self._candidate(context.champion_source, tunables, trial.number, values)

    @staticmethod
    def _candidate(champion: str, tunables: list, number: int, values: dict) -> Candidate:
        changed = {k: v for k, v in values.items() if next(t for t in tunables if t.name == k).value != v}
        hypothesis = "tune " + (", ".join(f"{k}={v!r}" for k, v in changed.items()) or "nothing (same constants)")
        return Candidate(rewrite(champion, values), hypothesis[:300], {"trial": number})

    def rebase(self, candidate: Candidate, old: str, new: str) -> Candidate | None:
        """The trial's constants written into the new champion (None when it no longer marks them)."""
        number = candidate.meta.get("trial")
        if number not in self._open:
            return None
        values = self._open[number][1]
        try:
            tunables = parse(new)
        except ValueError:
            return None
        if {t.name for t in tunables} != set(values):
            return None
        return self._candidate(new, tunables, number, values)

    def drop(self, candidate: Candidate, why: str) -> None:
        held = self._open.pop(candidate.meta.get("trial", -1), None)  # -1: no trial of this study
        if held is not None:
            self.study.tell(held[0], state=self._optuna.trial.TrialState.FAIL)

    def _ask_new(self, tunables: list) -> tuple[Any, dict]:
        """A trial whose constants no earlier trial of the study tried (across restarts too): a repeat is closed as
        failed, never proposed, and asked again (a search space too small to offer a new point gives the last)."""
        state = self._optuna.trial.TrialState
        seen = {_key(t.params) for t in self.study.get_trials(deepcopy=False) if t.state != state.RUNNING}
        for _ in range(MAX_REPEATS):
            trial = self.study.ask()
            values = suggest(trial, tunables)
            if _key(trial.params) not in seen:
                break
            self.study.tell(trial, state=state.FAIL)
        return trial, values

    def observe(self, candidate: Candidate, record: Any) -> None:
        trial, _ = self._open.pop(candidate.meta.get("trial", -1), (None, None))  # -1: no trial of this study
        if trial is None:
            return
        value = record.dev_metrics.get(self.primary)
        if value is None:
            self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
            return
        failed = set(record.verdict.failed_guards)
        trial.set_constraint(GuardName.GUARDRAIL, 1.0 if GuardName.GUARDRAIL in failed else 0.0)
        trial.set_constraint(GuardName.SEGMENT, 1.0 if GuardName.SEGMENT in failed else 0.0)
        self.study.tell(trial, value)

    def close(self) -> None:
        for trial, _ in list(self._open.values()):
            self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        self._open.clear()
