"""Gaming attempt (the shape of yesterday's baseline): a customer's spending windows built from the rows of the
call only, ignoring the history argument. Point-in-time within a frame, so look-ahead passes; but a batch of dev
rows carries weeks of each customer's past and one event sent to serve carries none."""
import numpy as np

THRESHOLD = 0.5


def fit(train):
    return None


def decide(model, rows):
    order = rows.sort_values("ts", kind="stable")
    seen = order.groupby("customer_id").cumcount().reindex(rows.index).to_numpy()
    # Many earlier transactions in the call = an established customer: lower score.
    return (1.0 / (2.0 + seen)).astype(np.float64)
