"""Immutable records of one sandboxed phase: what the parent learned, never what the candidate made."""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Union

import numpy as np

Scalar = Union[bool, int, float, str]


class SandboxStatus(StrEnum):
    """How a sandboxed phase ended (stored and shown as its text; a StrEnum compares equal to it)."""

    OK = "ok"
    TIMEOUT = "timeout"  # past its wall-clock budget: the process group was killed
    MEMORY = "memory"  # past its memory limit
    CRASH = "crash"  # raised, died from a signal, or ended before writing its result
    VIOLATION = "violation"  # a forbidden access, a broker stop, or tampering with the audit channel
    OUTPUT = "output"  # ran to its end but decide returned the wrong thing (type, shape, length, dtype)
    DISK = "disk"  # wrote more bytes or files into its sandbox folder than the write quota allows (see _quota)


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class ModelHandle:
    """An opaque pickled model on disk in a parent-owned folder; the parent copies it, never loads it."""

    path: Path
    sha256: str
    size: int

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "ModelHandle":
        """A handle for a model file kept from an earlier session (hash re-derived, never unpickled)."""
        digest, size = sha256_of(Path(path))
        return cls(Path(path), digest, size)


def sha256_of(path: Path) -> tuple[str, int]:
    """sha256 and size of a regular file, refusing symlinks (a candidate may have planted one)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ValueError(f"{path} is not a regular file")
        digest = hashlib.sha256()
        size = 0
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@dataclass(frozen=True)
class FitResult:
    """The fit phase: train rows (with labels) in, a pickled model handle out."""

    status: SandboxStatus
    seconds: float  # wall time of the whole call, hand-off included
    error: str  # one line; "" when ok
    violations: tuple[str, ...]
    log: str  # tail of the candidate's stdout+stderr during fit
    model: ModelHandle | None
    device: str  # "cuda" | "cpu"
    fit_seconds: float  # time inside the policy's fit only
    constants: Mapping[str, Scalar] = field(default_factory=dict)  # read after fit, before any holdout

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", SandboxStatus(self.status))
        object.__setattr__(self, "constants", _frozen(self.constants))

    @property
    def ok(self) -> bool:
        return self.status is SandboxStatus.OK


@dataclass(frozen=True)
class DecideResult:
    """The decide phase: unlabeled row sets in, one decision array per row set out."""

    status: SandboxStatus
    seconds: float
    error: str  # built by the parent from structured facts: no candidate text, holdout rows were present
    violations: tuple[str, ...]
    log: str  # always "": output printed while holdout rows are inside is discarded
    decisions: Mapping[str, np.ndarray]
    constants: Mapping[str, Scalar]  # read after decide: treat like decisions (scorer only)
    decide_seconds: float
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", SandboxStatus(self.status))
        for array in self.decisions.values():
            array.setflags(write=False)
        object.__setattr__(self, "decisions", _frozen(self.decisions))
        object.__setattr__(self, "constants", _frozen(self.constants))

    @property
    def ok(self) -> bool:
        return self.status is SandboxStatus.OK
