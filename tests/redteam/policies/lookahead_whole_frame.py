"""Gaming attempt: standardise amounts with the mean and std of the whole frame (future rows included)."""
import numpy as np

THRESHOLD = 0.5


def fit(train):
    return None


def decide(model, rows):
    z = (rows["amount"] - rows["amount"].mean()) / rows["amount"].std()
    return (1.0 / (1.0 + np.exp(-(z.to_numpy() - 3.0)))).clip(0, 1)
