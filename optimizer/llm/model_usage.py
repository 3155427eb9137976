"""Token usage the Anthropic API reports, and its price: shared by the meta-agent and the task-agent broker."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    input: int = 0
    output: int = 0
    cache_write: int = 0
    cache_read: int = 0

    @classmethod
    def of(cls, usage: Any) -> "Usage":
        return cls(int(getattr(usage, "input_tokens", 0) or 0), int(getattr(usage, "output_tokens", 0) or 0),
                   int(getattr(usage, "cache_creation_input_tokens", 0) or 0),
                   int(getattr(usage, "cache_read_input_tokens", 0) or 0))

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.input + other.input, self.output + other.output, self.cache_write + other.cache_write,
                     self.cache_read + other.cache_read)

    def cost(self, prices: Any) -> float:
        return (self.input * prices.input + self.output * prices.output + self.cache_write * prices.cache_write
                + self.cache_read * prices.cache_read) / 1e6
