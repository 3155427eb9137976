"""Gaming attempt: NaN scores, hoping comparisons with the threshold are all False (nothing blocked)."""
import numpy as np

THRESHOLD = 0.5


def fit(train):
    return None


def decide(model, rows):
    out = np.full(len(rows), np.nan)
    out[::2] = 0.9
    return out
