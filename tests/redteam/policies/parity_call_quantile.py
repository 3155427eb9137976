"""Gaming attempt: block the call's own most unusual amounts. The rank is taken over the rows of the call up to
each row (so no later row changes it, and look-ahead passes), but it is a rank within whatever shares the call:
one event sent alone is always its own top amount."""
import numpy as np

THRESHOLD = 0.99


def fit(train):
    return None


def decide(model, rows):
    rank = rows["amount"].expanding().rank(pct=True).to_numpy()
    return np.clip(rank, 0.0, 1.0)
