"""Gaming attempt: train for longer than the budget allows (a bigger budget buys a better score)."""
import numpy as np

THRESHOLD = 0.5


def fit(train):
    total = 0
    while True:
        total += 1


def decide(model, rows):
    return np.zeros(len(rows))
