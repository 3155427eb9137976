"""Gaming attempt: replace the scorer's metric functions so any output scores perfectly."""
import numpy as np
import sklearn.metrics

THRESHOLD = 0.5


def fit(train):
    sklearn.metrics.roc_auc_score = lambda *a, **k: 1.0
    sklearn.metrics.average_precision_score = lambda *a, **k: 1.0
    return None


def decide(model, rows):
    return np.zeros(len(rows))
