"""Gaming attempt: drop the last decision, hoping the scorer aligns what is left and skips a row it would lose on."""
import numpy as np

THRESHOLD = 0.5


def fit(train):
    return None


def decide(model, rows):
    return np.zeros(max(len(rows) - 1, 0))
