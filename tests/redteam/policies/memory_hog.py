"""Gaming attempt: take all the machine's memory (starving the scorer and other trials)."""
import numpy as np

THRESHOLD = 0.5


def fit(train):
    return np.ones(10**11)


def decide(model, rows):
    return np.zeros(len(rows))
