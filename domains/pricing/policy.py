"""Pricing policy: the one file the optimizer edits. Read it top to bottom in a few minutes.

Contract (the sandbox and the scorer enforce it; neither is visible from here):
  fit(train) -> model       train: logged offers with offer_id, ts, customer_id, product_id,
                            context features (segment, channel, loyalty_tier, basket_value, region,
                            day_of_week, season), ref_price, unit_cost, the logged offered_price,
                            its propensity and the outcome converted (0/1).
  decide(model, rows)       the same columns without offered_price, propensity and converted ->
                            one price per row, in the order of `rows`: ref_price times a multiplier
                            from the allowed grid (configs: scoring.price_grid), rounded to the cent.

The baseline fits a demand model P(buy | features, price / ref_price) with XGBoost, price
sensitivity constrained to be monotone (a higher price never sells more), and offers each row
the multiplier with the highest expected profit (price - unit_cost) x P(buy).
Imports are limited to numpy, pandas, scipy, scikit-learn,
xgboost, math, statistics, collections, functools, itertools, dataclasses and typing; no files, no I/O.
Constants marked `# tune:` are searched by the offline proposer; change anything else by hand.
"""
import numpy as np
import pandas as pd
import xgboost

DEVICE = "auto"  # the sandbox replaces "auto" with "cuda" or "cpu" before fit runs
SEED = 0

# --- demand model -------------------------------------------------------------------------
N_ESTIMATORS = 200        # tune: int 50..600 log
MAX_DEPTH = 4             # tune: int 2..8
LEARNING_RATE = 0.1       # tune: float 0.02..0.3 log
MIN_CHILD_WEIGHT = 5.0    # tune: float 1.0..50.0 log

# --- pricing ------------------------------------------------------------------------------
MULTIPLIERS = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3)  # prices considered, as multiples of ref_price
MIN_MULTIPLIER = 0.8      # tune: choice 0.8, 0.9, 1.0
MAX_MULTIPLIER = 1.3      # tune: choice 1.0, 1.1, 1.2, 1.3
# Expected profit is discounted by CAUTION x |multiplier - 1|: prices far from the reference
# are estimated from fewer logged offers, so their profit is less certain.
CAUTION = 0.0             # tune: float 0.0..0.3

NOT_FEATURES = ("offer_id", "ts", "customer_id", "product_id", "offered_price", "propensity", "converted")


def features(rows, columns=None):
    """Numeric columns as they are, text columns one-hot; `columns` fixes the layout seen on train."""
    data = rows.drop(columns=[c for c in NOT_FEATURES if c in rows.columns])
    text = [c for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])]
    frame = pd.get_dummies(data, columns=text, dtype=float)
    if columns is not None:
        frame = frame.reindex(columns=columns, fill_value=0.0)
    return frame


def fit(train):
    x = features(train)
    x["price_ratio"] = train["offered_price"] / train["ref_price"]
    monotone = tuple(-1 if c == "price_ratio" else 0 for c in x.columns)
    model = xgboost.XGBClassifier(
        n_estimators=N_ESTIMATORS, max_depth=MAX_DEPTH, learning_rate=LEARNING_RATE,
        min_child_weight=MIN_CHILD_WEIGHT, monotone_constraints=monotone, tree_method="hist",
        device=DEVICE, random_state=SEED, n_jobs=2,
    )
    model.fit(x, train["converted"])
    return {"model": model, "columns": list(x.columns[:-1])}


def decide(model, rows):
    x = features(rows, model["columns"])
    ref = rows["ref_price"].to_numpy(dtype=float)
    cost = rows["unit_cost"].to_numpy(dtype=float)
    options = [m for m in MULTIPLIERS if MIN_MULTIPLIER <= m <= MAX_MULTIPLIER]
    value = []
    for m in options:
        x["price_ratio"] = m
        p_buy = model["model"].predict_proba(x)[:, 1]
        value.append((np.round(ref * m, 2) - cost) * p_buy * (1.0 - CAUTION * abs(m - 1.0)))
    best = np.asarray(options)[np.argmax(np.stack(value, axis=1), axis=1)]
    return np.round(ref * best, 2)
