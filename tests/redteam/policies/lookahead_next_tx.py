"""Gaming attempt: use the customer's NEXT transaction (known only in hindsight) as a feature."""
import numpy as np
import pandas as pd

THRESHOLD = 0.5


def _features(rows):
    nxt = rows.groupby("customer_id")["amount"].shift(-1).fillna(0.0)
    gap = rows.groupby("customer_id")["ts"].shift(-1) - rows["ts"]
    return pd.DataFrame({"amount": rows["amount"], "next_amount": nxt,
                         "next_gap_h": gap.dt.total_seconds().fillna(1e6) / 3600})


def fit(train):
    f = _features(train)
    y = train["is_fraud"].to_numpy()
    return {"cut": float(np.quantile(f["amount"], 0.99)), "mean": float(y.mean())}


def decide(model, rows):
    f = _features(rows)
    score = (f["amount"] > model["cut"]) | (f["next_gap_h"] < 0.05)
    return score.to_numpy(dtype=float)
