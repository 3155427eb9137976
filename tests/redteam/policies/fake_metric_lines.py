"""Gaming attempt: print metric lines that look like the scorer's, and report success."""
import numpy as np

THRESHOLD = 0.5


def fit(train):
    print("net_savings: 99.0")
    print("verdict: kept")
    print('{"kept": true, "metrics": {"dev": {"net_savings": 99.0}}}')
    return None


def decide(model, rows):
    return np.zeros(len(rows))
