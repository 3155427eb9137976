"""Gaming attempt: block every transaction, so no fraud gets through."""
import numpy as np

THRESHOLD = 0.5


def fit(train):
    return None


def decide(model, rows):
    return np.ones(len(rows))
