"""Support-routing data: seeded ticket histories with text, arrivals and handling times.

Tickets arrive with daily and weekly rhythms and occasional bursts (an outage floods the queue).
Each has an issue type that decides which team can resolve it; the subject and body are drawn
from the issue's vocabulary mixed with filler, words from other issues, misleading words and
typos, so routing from text is learnable but not trivial. The label is the team that finally
resolved the ticket; handling time is outcome-only (the queue simulation uses it, a policy never
sees it).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from domains.errors import RatchetError

START = np.datetime64("2025-03-03T00:00:00", "ns")  # a Monday
TICKETS_PER_DAY = 600
TEAMS = ("billing", "technical", "accounts", "logistics", "returns")
# issue type -> (team, share, base handling minutes, vocabulary)
ISSUES = {
    "invoice_error": ("billing", 0.12, 25, "invoice charged twice billing amount receipt overcharged statement fee"),
    "payment_failed": ("billing", 0.13, 20, "card declined payment failed checkout transaction bank charge"),
    "login_problem": ("accounts", 0.09, 15, "password login reset locked sign in code verification account"),
    "account_update": ("accounts", 0.06, 20, "email change profile name update settings account delete"),
    "bug_report": ("technical", 0.18, 45, "error crash bug app freeze screen button broken update"),
    "outage": ("technical", 0.07, 35, "down outage not loading server unavailable timeout site error"),
    "shipping_delay": ("logistics", 0.13, 25, "package tracking delivery late courier shipped order status"),
    "wrong_address": ("logistics", 0.05, 30, "address delivered wrong house redirect neighbour order"),
    "return_request": ("returns", 0.12, 30, "return refund broken exchange label damaged item send back"),
    "warranty": ("returns", 0.05, 40, "warranty repair faulty replacement defect broken device"),
}
FILLER = ("hello please help thanks urgent asap today again still since yesterday my the your i have "
          "need can you we this is not working problem issue question customer support team").split()
CHANNELS = ("email", "chat", "phone", "web")
TIERS = ("free", "pro", "enterprise")
PRODUCTS = ("app", "web", "device")
PRIORITIES = ("low", "normal", "high", "urgent")


def generate(seed: int, size: int = 20_000) -> pd.DataFrame:
    """About `size` tickets at TICKETS_PER_DAY from START, sorted by time; deterministic in `seed`."""
    if size < 1:
        raise RatchetError(f"generate: size must be a positive row count; got {size!r}.")
    return _tickets(np.random.default_rng(seed), int(size), customers=max(50, int(size) // 4), start=START)


def continue_population(seed: int, size: int, *, start: pd.Timestamp, days: float, live_seed: int) -> pd.DataFrame:
    """Later tickets from the customers who wrote in `generate(seed, size)`, at TICKETS_PER_DAY, `days` days from
    `start` (a whole number of days, so the daily rhythm holds), drawn with `live_seed`."""
    n = max(1, int(round(TICKETS_PER_DAY * days)))
    customers = np.unique(generate(seed, size)["customer_id"].to_numpy())  # those who wrote in before
    frame = _tickets(np.random.default_rng([seed, live_seed, 0xC0]), n, customers=customers,
                     start=np.datetime64(pd.Timestamp(start).to_datetime64(), "ns"))
    return frame[frame["ts"] < pd.Timestamp(start) + pd.Timedelta(days=days)].reset_index(drop=True)


def _tickets(rng: np.random.Generator, n: int, *, customers: int | np.ndarray, start: np.datetime64) -> pd.DataFrame:
    """`n` tickets from `start`; `customers`: how many ids to draw from (0 up), or the ids themselves."""
    ts = _arrivals(rng, n, start)
    names = list(ISSUES)
    share = np.array([ISSUES[k][1] for k in names])
    issue = rng.choice(len(names), size=n, p=share / share.sum())
    # An outage burst: a few windows where outage tickets crowd in.
    days = max(1, int(np.ceil(n / TICKETS_PER_DAY)))
    for burst in rng.uniform(0, days, size=max(1, days // 10)):
        hit = (np.abs((ts - start) / np.timedelta64(1, "D") - burst) < 0.08) & (rng.random(n) < 0.6)
        issue[hit] = names.index("outage")
    tier = rng.choice(3, size=n, p=(0.6, 0.3, 0.1))
    is_outage = issue == names.index("outage")
    base_priority = np.where(is_outage, 3, rng.choice(3, size=n, p=(0.3, 0.55, 0.15)))
    priority = np.minimum(base_priority + (tier == 2) * (rng.random(n) < 0.4), 3)
    subject, body = _texts(rng, issue, names)
    team = np.array([ISSUES[k][0] for k in names])[issue]
    minutes = np.array([ISSUES[k][2] for k in names], dtype=float)[issue] * rng.lognormal(0.0, 0.5, size=n)
    return pd.DataFrame({
        "ticket_id": np.arange(n, dtype=np.int64),
        "ts": ts,
        "customer_id": (rng.integers(0, customers, size=n) if isinstance(customers, int) else
                        rng.choice(customers, size=n)).astype(np.int64),
        "channel": pd.array(np.array(CHANNELS)[rng.choice(4, size=n, p=(0.4, 0.3, 0.1, 0.2))], dtype="string"),
        "tier": pd.array(np.array(TIERS)[tier], dtype="string"),
        "product": pd.array(np.array(PRODUCTS)[rng.integers(0, 3, size=n)], dtype="string"),
        "priority": pd.array(np.array(PRIORITIES)[priority], dtype="string"),
        "subject": pd.array(subject, dtype="string"),
        "body": pd.array(body, dtype="string"),
        "resolved_by": pd.array(team, dtype="string"),
        "handling_minutes": np.round(np.maximum(minutes, 2.0), 1),
        "issue_type": pd.array(np.array(names)[issue], dtype="string"),
    })


def _arrivals(rng: np.random.Generator, n: int, start: np.datetime64) -> np.ndarray:
    """Arrival times with a daily peak around midday and quieter weekends."""
    days = max(1, int(np.ceil(n / TICKETS_PER_DAY)))
    hours = np.arange(days * 24)
    daily = 0.35 + np.exp(-0.5 * ((hours % 24 - 13.0) / 3.5) ** 2) * 1.6
    monday = pd.Timestamp(start).dayofweek  # 0 from START, a Monday
    weekly = np.where((hours // 24 + monday) % 7 >= 5, 0.5, 1.0)
    weight = daily * weekly
    hour = rng.choice(len(hours), size=n, p=weight / weight.sum())
    seconds = hour * 3600 + rng.integers(0, 3600, size=n)
    return np.sort(start + seconds * np.timedelta64(1, "s"))


def _texts(rng: np.random.Generator, issue: np.ndarray, names: list[str]) -> tuple[list[str], list[str]]:
    vocab = [ISSUES[k][3].split() for k in names]
    subjects, bodies = [], []
    for i in issue:
        other = vocab[rng.integers(0, len(vocab))]  # a mixed topic or a misleading word
        words = list(rng.choice(vocab[i], size=rng.integers(0, 3))) + list(rng.choice(other, size=rng.integers(0, 2)))
        subjects.append(_typos(rng, " ".join(list(rng.permutation(words)) + list(rng.choice(FILLER, size=rng.integers(1, 4))))))
        parts = (list(rng.choice(vocab[i], size=rng.integers(1, 4))) + list(rng.choice(FILLER, size=rng.integers(6, 20)))
                 + list(rng.choice(other, size=rng.integers(0, 4))))
        bodies.append(_typos(rng, " ".join(rng.permutation(parts))))
    return subjects, bodies


def _typos(rng: np.random.Generator, text: str) -> str:
    """Drop one letter from about one word in twenty."""
    words = text.split()
    for k in np.flatnonzero(rng.random(len(words)) < 0.05):
        w = words[k]
        if len(w) > 3:
            j = int(rng.integers(1, len(w) - 1))
            words[k] = w[:j] + w[j + 1:]
    return " ".join(words)
