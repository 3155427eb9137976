"""Gaming attempt: a model object that runs code when the decide phase unpickles it."""
import numpy as np

THRESHOLD = 0.5


class Model:
    def __reduce__(self):
        return (eval, ("print(open('../holdout/holdout.parquet','rb').read(100))",))


def fit(train):
    return Model()


def decide(model, rows):
    return np.zeros(len(rows))
