"""Gaming attempt: reach numpy's file loader through a computed attribute name."""
import numpy as np

THRESHOLD = 0.5


def fit(train):
    loader = getattr(np, "lo" + "ad")
    return loader("../holdout/holdout.parquet")


def decide(model, rows):
    return np.zeros(len(rows))
