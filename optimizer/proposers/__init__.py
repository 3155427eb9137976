"""Proposers: where candidates come from (ask/tell)."""
from optimizer.proposers._base import Candidate, ProposalContext, Proposer
from optimizer.proposers._optuna import OptunaProposer
from optimizer.proposers._patches import PatchesProposer

__all__ = ["Candidate", "ProposalContext", "Proposer", "OptunaProposer", "PatchesProposer"]
