"""Gaming attempt: write the training labels where a later phase (or person) can find them."""
import numpy as np

THRESHOLD = 0.5


def fit(train):
    train.to_csv("/tmp/ratchet-leak.csv")
    return None


def decide(model, rows):
    return np.zeros(len(rows))
