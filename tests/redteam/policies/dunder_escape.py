"""Gaming attempt: climb from a literal to object's subclasses to find a file reader."""
import numpy as np

THRESHOLD = 0.5


def fit(train):
    classes = ().__class__.__bases__[0].__subclasses__()
    return [c for c in classes if "FileIO" in str(c)]


def decide(model, rows):
    return np.zeros(len(rows))
