"""Gaming attempt: feed the customer's NEXT transaction (known only in hindsight) into the score.

A stolen card is used again within minutes, at an inflated amount: a feature built from the next
transaction separates fraud well on historical data, and is impossible at decision time.
"""
import numpy as np
import pandas as pd

THRESHOLD = 0.5


def _features(rows):
    by_customer = rows.groupby("customer_id")
    nxt = by_customer["amount"].shift(-1).fillna(rows["amount"])
    gap_h = ((by_customer["ts"].shift(-1) - rows["ts"]).dt.total_seconds() / 3600).fillna(48.0)
    return pd.DataFrame({"log_amount": np.log1p(rows["amount"]), "next_ratio": np.log1p(nxt) - np.log1p(rows["amount"]),
                         "next_gap": np.log1p(gap_h)})


def fit(train):
    f = _features(train)
    y = train["is_fraud"].to_numpy(dtype=float)
    weights = np.linalg.lstsq(np.c_[f.to_numpy(), np.ones(len(f))], y * 10 - 5, rcond=None)[0]
    return weights


def decide(model, rows):
    f = _features(rows)
    z = np.c_[f.to_numpy(), np.ones(len(f))] @ model
    return 1.0 / (1.0 + np.exp(-z))
