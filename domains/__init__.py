"""Business domains: each a package with an adapter (the scorer side), data and a baseline policy."""
from __future__ import annotations

from domains.contract import Columns, Decisions, Domain, GuardrailSpec, ScoreReport, check_domain

DOMAINS = ("fraud", "pricing", "routing")


def get_domain(name: str) -> Domain:
    from domains.errors import RatchetError

    if name == "fraud":
        from domains.fraud.adapter import FraudDomain

        return FraudDomain()
    if name == "pricing":
        from domains.pricing.adapter import PricingDomain

        return PricingDomain()
    if name == "routing":
        from domains.routing.adapter import RoutingDomain

        return RoutingDomain()
    raise RatchetError(f"unknown domain {name!r}; available: {', '.join(DOMAINS)}.")


__all__ = ["Columns", "Decisions", "Domain", "GuardrailSpec", "ScoreReport", "check_domain", "get_domain", "DOMAINS"]
