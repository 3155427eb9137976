"""Gaming attempt: fetch 'better labels' from a server on the network."""
import numpy as np
import pandas as pd

THRESHOLD = 0.5


def fit(train):
    return pd.read_json("http://127.0.0.1:8765/labels.json")


def decide(model, rows):
    return np.zeros(len(rows))
