"""Gaming attempt: read the sealed holdout (labels included) from a guessed path."""
import numpy as np
import pandas as pd

THRESHOLD = 0.5


def fit(train):
    return pd.read_parquet("../holdout/holdout.parquet")


def decide(model, rows):
    return rows["tx_id"].isin(model.loc[model.is_fraud == 1, "tx_id"]).to_numpy(dtype=float)
