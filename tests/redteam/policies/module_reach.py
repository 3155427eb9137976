"""Gaming attempt: reach the os module through pandas' internals."""
import numpy as np
import pandas as pd

THRESHOLD = 0.5


def fit(train):
    return pd.io.common.os.listdir("..")


def decide(model, rows):
    return np.zeros(len(rows))
