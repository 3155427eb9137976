"""Fraud policy: the one file the optimizer edits. Read it top to bottom in a few minutes.

Contract (the sandbox and the scorer enforce it; neither is visible from here):
  fit(train) -> model       train: tx_id, ts, amount, maybe customer_id and terminal_id, maybe
                            extra feature columns: numbers (V1..V28) or text categories (pandas
                            "string": merchant category, channel, country), and the label is_fraud (0/1).
  decide(model, rows, history)
                            rows: the same columns without is_fraud -> one score in [0, 1] per row,
                            in the order of `rows`. history: the earlier transactions of the rows'
                            customers and terminals from the HISTORY_DAYS before them (same columns).
  THRESHOLD                 the scorer blocks a transaction when its score >= THRESHOLD.

Features are point-in-time: a row's features come only from its customer's and terminal's
transactions at or before its own time (history, then earlier rows of the call), so a decision is
the same whether the row comes alone, in a batch, or with later rows. No labels exist at decision time.
Imports are limited to numpy, pandas, scipy, scikit-learn, xgboost, math, statistics, collections,
functools, itertools, dataclasses and typing; no files, no I/O.
Constants marked `# tune:` are searched by the offline proposer; change anything else by hand.
"""
import numpy as np
import pandas as pd
import xgboost

DEVICE = "auto"  # the sandbox replaces "auto" with "cuda" or "cpu" before fit runs
SEED = 0

# --- model --------------------------------------------------------------------------------
N_ESTIMATORS = 300        # tune: int 50..800 log
MAX_DEPTH = 5             # tune: int 2..10
LEARNING_RATE = 0.08      # tune: float 0.01..0.3 log
SUBSAMPLE = 0.8           # tune: float 0.5..1.0
COLSAMPLE_BYTREE = 0.8    # tune: float 0.4..1.0
MIN_CHILD_WEIGHT = 2.0    # tune: float 0.5..20.0 log
SCALE_POS_WEIGHT = 1.0    # tune: float 1.0..50.0 log

# --- features -----------------------------------------------------------------------------
# Days of earlier transactions decide() is given: at least the longest window below, or a row decided
# alone would see less of its past than one decided in a batch (the parity guard refuses that).
HISTORY_DAYS = 60
WINDOWS = (1, 7, 30)  # days of customer spending and terminal activity windows
# Days of history behind "amount vs the customer's usual amount".
REFERENCE_DAYS = 30       # tune: choice 7, 14, 30, 60

# A text column's most frequent levels in train become categories (XGBoost's own categorical splits);
# rarer levels and levels first seen after fit count as missing.
MAX_LEVELS = 50

# --- decision -----------------------------------------------------------------------------
THRESHOLD = 0.3           # tune: float 0.05..0.95

NOT_FEATURES = ("tx_id", "ts", "customer_id", "terminal_id", "is_fraud")
DAY_NS = 86_400 * 10**9


def trailing(group, t, cents, days):
    """Per row and window d: (count, summed cents) of same-group rows in (t - d days, t].

    Only the row itself and rows before it in (time, frame order) count, so ties are cut the
    same way whether or not later rows are present. Integer cents keep the sums exact.
    """
    n = len(t)
    order = np.lexsort((np.arange(n), t, group))
    g, ts = group[order], t[order]
    # Ranking times and window starts together packs (group, time) into one sortable integer.
    _, rank = np.unique(np.concatenate([ts] + [ts - d * DAY_NS for d in days]), return_inverse=True)
    width = int(rank.max()) + 1
    key = g * width + rank[:n]
    csum = np.concatenate([[0], np.cumsum(cents[order])])
    pos = np.arange(n)
    out = {}
    for k, d in enumerate(days):
        start = np.searchsorted(key, g * width + rank[(k + 1) * n:(k + 2) * n], side="right")
        count, total = np.empty(n, np.int64), np.empty(n, np.int64)
        count[order], total[order] = pos + 1 - start, csum[pos + 1] - csum[start]
        out[d] = (count, total)
    return out


def clock(ts):
    """Per time: the hour of the day with minutes as a fraction, and whether it falls on a weekend; the values
    `ts.dt.hour + ts.dt.minute / 60` and `ts.dt.day_of_week >= 5` give, counted on the integer nanoseconds of the
    wall-clock time (pandas' date accessors cost more than the rest of one transaction's features).
    A missing time gives hour NaN and no weekend, as they do."""
    if getattr(ts.dtype, "tz", None) is not None:
        ts = ts.dt.tz_localize(None)  # the local wall clock
    t = ts.to_numpy().astype("datetime64[ns]").astype(np.int64)
    missing = t == np.iinfo(np.int64).min
    hour = t // (3600 * 10**9) % 24 + t // (60 * 10**9) % 60 / 60
    hour[missing] = np.nan
    weekend = (t // DAY_NS + 3) % 7 >= 5  # 1970-01-01 was a Thursday (3; Monday is 0)
    return hour, (weekend & ~missing).astype(np.float64)


def features(rows, levels=None):
    """One row of features per transaction, from `rows` alone (no labels, no later rows); `levels`: the
    categories of each text column, learned at fit."""
    n = len(rows)
    ts = rows["ts"]
    t = ts.to_numpy().astype("datetime64[ns]").astype(np.int64)
    amount = rows["amount"].to_numpy(dtype=np.float64)
    cents = np.rint(amount * 100).astype(np.int64)
    hour, weekend = clock(ts)
    out = {
        "amount": amount,
        "hour": hour,
        "night": (hour < 6).astype(np.float64),
        "weekend": weekend,
    }
    if "customer_id" in rows.columns:
        group = pd.factorize(rows["customer_id"])[0].astype(np.int64)
        days = sorted(set(WINDOWS) | {REFERENCE_DAYS})
        win = trailing(group, t, cents, days)
        for d in WINDOWS:
            count, total = win[d]
            out[f"customer_n_{d}d"] = count
            out[f"customer_mean_{d}d"] = total / count / 100
        # The customer's usual amount excludes this transaction, or a theft would hide itself.
        count, total = win[REFERENCE_DAYS]
        before = np.divide(total - cents, (count - 1) * 100.0, out=np.full(n, np.nan), where=count > 1)
        out["amount_vs_usual"] = np.divide(amount, before, out=np.full(n, np.nan), where=before > 0)
    if "terminal_id" in rows.columns:
        group = pd.factorize(rows["terminal_id"])[0].astype(np.int64)
        for d, (count, _) in trailing(group, t, cents, list(WINDOWS)).items():
            out[f"terminal_n_{d}d"] = count
    for col in rows.columns:
        if col not in NOT_FEATURES and col not in out and pd.api.types.is_numeric_dtype(rows[col]):
            out[col] = rows[col].to_numpy(dtype=np.float64, na_value=np.nan)
    # One float32 block: the same values as a frame of float64 columns cast afterwards, built in one step.
    block = np.empty((n, len(out)), dtype=np.float32)
    for j, values in enumerate(out.values()):
        block[:, j] = values
    frame = pd.DataFrame(block, index=rows.index, columns=list(out))
    for col, known in (levels or {}).items():
        if col in rows.columns:
            values = rows[col].astype(object)
            frame[col] = pd.Categorical(values.where(values.isin(known)), categories=known)  # unseen: missing
    return frame


def text_levels(train):
    """Per text column of train, its MAX_LEVELS most frequent values (ties by value): the fit's vocabulary."""
    out = {}
    for col in train.columns:
        if col not in NOT_FEATURES and not pd.api.types.is_numeric_dtype(train[col]) \
                and not pd.api.types.is_datetime64_any_dtype(train[col]):
            counts = train[col].astype(object).value_counts()
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
            out[col] = [str(value) for value, _ in ranked[:MAX_LEVELS]]
    return out


def fit(train):
    levels = text_levels(train)
    X, y = features(train, levels), train["is_fraud"].to_numpy(dtype=np.int64)
    model = xgboost.XGBClassifier(
        n_estimators=N_ESTIMATORS,
        max_depth=MAX_DEPTH,
        learning_rate=LEARNING_RATE,
        subsample=SUBSAMPLE,
        colsample_bytree=COLSAMPLE_BYTREE,
        min_child_weight=MIN_CHILD_WEIGHT,
        scale_pos_weight=SCALE_POS_WEIGHT,
        tree_method="hist",
        enable_categorical=True,
        device="cpu" if DEVICE == "auto" else DEVICE,
        n_jobs=2,
        random_state=SEED,
    )
    model.fit(X, y)
    # Rows to decide arrive as CPU frames; predicting on the CPU avoids device-mismatch warnings.
    model.set_params(device="cpu")
    model.text_levels_ = levels  # decide encodes text columns with the categories fit saw
    return model


def decide(model, rows, history):
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float64)
    # Windows over the customers' and terminals' past and the call's rows; only the rows are scored.
    both = pd.concat([history, rows], ignore_index=True) if len(history) else rows
    X = features(both, model.text_levels_)
    if model.text_levels_:  # categories need the frame
        # Columns seen in fit but missing here (say, no terminal_id) become missing values.
        X = X.iloc[len(both) - len(rows):].reindex(columns=list(model.feature_names_in_))
        return model.predict_proba(X)[:, 1].astype(np.float64)
    # All numeric: the booster on the float32 array, in fit's column order, gives the same probabilities
    # without a frame's overhead (a few ms per call, which dominates deciding one transaction as it arrives).
    block = X.to_numpy(dtype=np.float32)[len(both) - len(rows):]
    where = {name: j for j, name in enumerate(X.columns)}
    fitted = np.full((len(rows), len(model.feature_names_in_)), np.nan, dtype=np.float32)
    for j, name in enumerate(model.feature_names_in_):
        if name in where:  # a column seen in fit but missing here stays missing
            fitted[:, j] = block[:, where[name]]
    return model.get_booster().inplace_predict(fitted).astype(np.float64)
