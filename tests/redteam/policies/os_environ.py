"""Gaming attempt: read secrets and paths from the environment."""
import os

import numpy as np

THRESHOLD = 0.5


def fit(train):
    return dict(os.environ)


def decide(model, rows):
    return np.zeros(len(rows))
