"""Contamination: memorised holdout ids, canaries and dev rows are caught; honest literals and columns pass."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from guards import GuardName
from guards.contamination import RowValues, check_text, find_canaries, label_leakage, row_values, scan_literals

HOLDOUT_IDS = set(range(240_000, 300_000))
CANARIES = ["9100000000000123456", "rc-7f3a0c9e11d2b4a5"]

HONEST = '''
import numpy as np
THRESHOLD = 0.62
WINDOW_DAYS = 30
BANDS = (20.0, 100.0, 220.0)
def fit(train):
    return train["amount"].quantile(0.99)
def decide(model, rows):
    return np.clip(rows["amount"].to_numpy() / (model * 1.5), 0, 1)
'''

MEMORISED = '''
import numpy as np
THRESHOLD = 0.5
KNOWN_FRAUD = {251_003: 1, 262_417: 1, 287_999: 1}
def fit(train):
    return None
def decide(model, rows):
    return rows["tx_id"].map(KNOWN_FRAUD).fillna(0.1).to_numpy()
'''


def test_honest_policy_passes():
    result = scan_literals(HONEST, holdout_ids=HOLDOUT_IDS, canaries=CANARIES)
    assert result.passed, result.detail
    assert result.name is GuardName.CONTAMINATION and result.figures["id_matches"] == 0


def test_memorised_holdout_ids_fail_without_naming_them():
    result = scan_literals(MEMORISED, holdout_ids=HOLDOUT_IDS, canaries=CANARIES)
    assert not result.passed
    assert "3 distinct literals are holdout identifiers" in result.detail
    assert "251" not in result.detail and "262" not in result.detail  # no membership oracle
    assert result.figures["id_matches"] == 3


def test_below_min_matches_passes():
    two = MEMORISED.replace("287_999: 1", "12: 1")
    assert scan_literals(two, holdout_ids=HOLDOUT_IDS).passed
    assert not scan_literals(two, holdout_ids=HOLDOUT_IDS, min_matches=2).passed


def test_ids_match_across_int_float_and_string_forms():
    source = "IDS = ['251003', 262417.0, 287999]\n"
    assert not scan_literals(source, holdout_ids=HOLDOUT_IDS).passed
    string_ids = {f"tx-{i}" for i in range(100)}
    assert not scan_literals("X = ['tx-1', 'tx-22', 'tx-33']\n", holdout_ids=string_ids).passed


def test_small_constants_never_count_as_ids():
    small_ids = set(range(0, 5000))
    source = "A = 0\nB = 1\nC = 30\nD = 7\nE = -1\nF = 'ab'\n"
    assert scan_literals(source, holdout_ids=small_ids | {"ab"}).passed


def test_holdout_values_are_counted():
    values = {47.23, 112.91, 333.07, 5.5}
    source = "AMOUNTS = (47.23, 112.91, 333.07)\n"
    assert not scan_literals(source, holdout_ids=set(), holdout_values=values).passed
    assert scan_literals(source, holdout_ids=set(), holdout_values={1.25}).passed


@pytest.mark.parametrize("where", ["literal", "comment", "negative"])
def test_any_canary_fails(where: str):
    text = {"literal": f"X = {CANARIES[0]}\n", "comment": f"# seen {CANARIES[1]} in a log\nX = 1\n",
            "negative": f"X = -{CANARIES[0]}\n"}[where]
    result = scan_literals(text, holdout_ids=HOLDOUT_IDS, canaries=CANARIES)
    assert not result.passed and "canary" in result.detail
    assert CANARIES[0] not in result.detail and CANARIES[1] not in result.detail  # never echoed in full


def test_unparseable_source_fails_closed():
    assert not scan_literals("def (:\n", holdout_ids=HOLDOUT_IDS).passed


def test_find_canaries():
    text = f"a {CANARIES[1]} b {CANARIES[0]} c {CANARIES[1]}"
    assert find_canaries(text, CANARIES) == [CANARIES[1], CANARIES[0]]
    assert find_canaries("rc-7f3a0c9e11d2b4a", CANARIES) == []  # a prefix is not an occurrence
    assert find_canaries("anything", ["", "x"]) == []


def test_check_text_names_where_and_line():
    trace = "experiment 12\nmissed fraud:\n  {'tx_id': " + CANARIES[0] + "}\n"
    result = check_text("trace of experiment 12", trace, CANARIES)
    assert not result.passed
    assert "trace of experiment 12" in result.detail and "line 3" in result.detail
    assert CANARIES[0] not in result.detail
    clean = check_text("prompt", "improve recall on high amounts", CANARIES)
    assert clean.passed and "prompt" in clean.detail


def frame(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(int)
    return pd.DataFrame({
        "tx_id": np.arange(n),
        "amount": rng.gamma(2.0, 30.0, n) + 40 * y,  # informative, not leaking
        "customer_id": rng.integers(0, 400, n),
        "channel": rng.choice(["web", "pos"], n),
        "chargeback": y * 1.0,  # derived from the label
        "review_code": np.where(y == 1, rng.choice(["R7", "R9"], n), rng.choice(["A1", "A2", "A3"], n)),
        "is_fraud": y,
    })


def test_label_leakage_flags_derived_columns_only():
    report = label_leakage(frame(), "is_fraud", ["tx_id", "amount", "customer_id", "channel", "chargeback",
                                                 "review_code"])
    assert set(report["leaking"]) == {"chargeback", "review_code"}
    assert report["auc"]["chargeback"] == pytest.approx(1.0)
    assert report["raw_auc"]["review_code"] is None and report["encoded_auc"]["review_code"] > 0.98
    assert 0.6 < report["auc"]["amount"] < 0.98
    assert report["auc"]["tx_id"] < 0.6 and report["auc"]["channel"] < 0.6
    assert report["encoded_auc"]["tx_id"] < 0.6  # unique ids cannot be target-encoded out of fold


def test_label_leakage_is_symmetric():
    df = frame()
    df["inverse"] = 1.0 - df["is_fraud"]
    report = label_leakage(df, "is_fraud", ["inverse"])
    assert report["raw_auc"]["inverse"] == pytest.approx(1.0) and report["leaking"] == ["inverse"]


def test_label_leakage_rejects_bad_labels():
    df = frame()
    with pytest.raises(ValueError, match="2 classes"):
        label_leakage(df.assign(is_fraud=1), "is_fraud", ["amount"])
    with pytest.raises(ValueError, match="'nope'"):
        label_leakage(df, "is_fraud", ["nope"])


def test_label_leakage_on_datetimes_with_missing_values():
    df = frame()
    ts = pd.Series(pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(df)), unit="min"))
    df["flagged_at"] = ts.where(df["is_fraud"] == 1)  # only set for fraud: the missingness is the label
    df["ts"] = ts
    report = label_leakage(df, "is_fraud", ["flagged_at", "ts"])
    assert report["leaking"] == ["flagged_at"] and report["auc"]["ts"] < 0.6


@pytest.mark.parametrize("seed", range(6))
def test_leakage_auc_is_sklearns_roc_auc_with_ties_and_either_class_smaller(seed: int):
    from sklearn.metrics import roc_auc_score

    from guards.contamination import _auc

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    y = (rng.random(n) < rng.uniform(0.01, 0.99)).astype(float)
    y[0], y[-1] = 0.0, 1.0  # both classes
    score = np.round(rng.normal(size=n) + y * rng.uniform(-1, 1), int(rng.integers(0, 3)))  # many ties
    expected = roc_auc_score(y, score)
    assert _auc(y, score) == pytest.approx(max(expected, 1 - expected), abs=1e-12)
    with pytest.raises(ValueError, match="both label classes"):
        _auc(np.ones(n), score)


# ids: a value per row, which skips the per-value tables (told by a sort, or by order when the ids are ordered)
@pytest.mark.parametrize("kind", ["ids", "ids with one missing", "text ids", "40 levels", "3 levels",
                                  "ids but one repeat", "ordered ids", "ordered ids but one repeat"])
def test_out_of_fold_encoding_is_the_other_folds_label_mean(kind):
    from guards.contamination import _out_of_fold_encoding

    rng = np.random.default_rng(5)
    n, folds = 400, 5
    ids = (np.arange(n) if kind.startswith("ordered") else rng.permutation(n)).astype(float)
    if kind == "ids with one missing":
        ids[7] = np.nan
    if kind.endswith("one repeat"):
        ids[7] = ids[8]
    values = pd.Series(rng.integers(0, int(kind.split()[0]), n) if "levels" in kind else ids)
    if kind == "text ids":
        values = values.astype(int).astype(str)
    y = (rng.random(n) < 0.3).astype(float)
    fold_of = rng.permutation(n) % folds
    fold_rows = [np.flatnonzero(fold_of == f).astype(np.int32) for f in range(folds)]
    got = _out_of_fold_encoding(values, y, fold_rows)
    for i in range(n):  # by the definition, row by row
        other = fold_of != fold_of[i]
        same = other & (values == values[i]).to_numpy()  # a missing value equals nothing: unseen, as one missing is
        expected = y[same].mean() if same.any() else y[other].mean()
        assert got[i] == pytest.approx(expected, abs=1e-12), i


# --- dev rows memorised: literals copied from dev rows' feature values --------------------------------------------

def card_frame(n: int, seed: int) -> pd.DataFrame:
    """Shaped like the public card-fraud export: V1..V28 floats with many digits, amount in cents, a label."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.002).astype(int)
    cols = {"Time": np.sort(rng.uniform(0, 172_800, n)).round(0)}
    for j in range(1, 29):
        cols[f"V{j}"] = rng.standard_t(4, n) * (1.0 + 3.0 * y)  # heavy tails; frauds far out
    cols["Amount"] = np.round(rng.gamma(1.2, 70.0, n), 2)
    cols["Class"] = y
    return pd.DataFrame(cols)


DEV = card_frame(50_000, seed=1)
FEATURES = [c for c in DEV.columns if c not in ("Time", "Class")]
DEV_VALUES = row_values(DEV, FEATURES)
FRAUD_V14 = DEV.loc[DEV.Class == 1, "V14"].head(10).tolist()


def _rules(values, fmt=repr) -> str:
    """What a proposer writes after a trace showed it the dev frauds its model missed."""
    rules = "\n".join(f"    if abs(row.V14 - ({fmt(v)})) < 1e-6:\n        return 1.0" for v in values)
    return f"THRESHOLD = 0.5\n\n\ndef score(row):\n{rules}\n    return 0.0\n"


def test_dev_literals_are_refused_by_name_without_naming_them():
    result = scan_literals(_rules(FRAUD_V14), holdout_ids=frozenset(), dev_values=DEV_VALUES)
    assert not result.passed and result.name is GuardName.CONTAMINATION
    assert result.detail.startswith("policy source memorises dev rows: 10 distinct literals equal feature values "
                                    "of dev rows (limit 2")
    assert result.figures["dev_matches"] == 10 and result.figures["dev_chance"] < 1e-10
    for v in FRAUD_V14:  # which literals matched is never said
        assert repr(v) not in result.detail and f"{v:.4f}" not in result.detail


@pytest.mark.parametrize("decimals", [9, 7, 6])
def test_dev_literals_printed_with_fewer_digits_still_match(decimals: int):
    source = _rules(FRAUD_V14, lambda v: f"{v:.{decimals}f}")
    result = scan_literals(source, holdout_ids=frozenset(), dev_values=DEV_VALUES)
    assert not result.passed and "memorises dev rows" in result.detail
    assert result.figures["dev_matches"] == 10


def test_copies_too_coarse_to_point_at_a_row_are_not_evidence():
    """At 4 decimals, 1.45M dev values put one within rounding of almost any number near 0: the copies match, but
    no more often than any 4-decimal numbers would, so they prove nothing (a threshold like -1.1952 is honest)."""
    result = scan_literals(_rules(FRAUD_V14, lambda v: f"{v:.4f}"), holdout_ids=frozenset(), dev_values=DEV_VALUES)
    assert result.passed and result.figures["dev_matches"] >= 3 and result.figures["dev_chance"] > 1e-3


def test_dev_values_not_rounded_to_the_printed_digits_do_not_match():
    shifted = [v + 3e-8 if v > 0 else v - 3e-8 for v in FRAUD_V14]  # off by 3 in the 8th decimal
    source = _rules(shifted, lambda v: f"{v:.8f}")
    result = scan_literals(source, holdout_ids=frozenset(), dev_values=DEV_VALUES)
    assert result.passed and result.figures["dev_matches"] <= 1  # another dev value could, by chance


def test_two_dev_literals_are_below_the_limit():
    assert scan_literals(_rules(FRAUD_V14[:2]), holdout_ids=frozenset(), dev_values=DEV_VALUES).passed
    assert not scan_literals(_rules(FRAUD_V14[:2]), holdout_ids=frozenset(), dev_values=DEV_VALUES,
                             min_matches=2).passed


def test_dev_and_holdout_memorised_both_said():
    source = _rules(FRAUD_V14) + "KNOWN = (251003, 262417, 287999)\n"
    result = scan_literals(source, holdout_ids=HOLDOUT_IDS, dev_values=DEV_VALUES)
    assert not result.passed
    assert "memorises holdout rows: 3 distinct literals are holdout identifiers" in result.detail
    assert "memorises dev rows: 10 distinct literals" in result.detail


def test_train_rows_values_are_not_dev_rows():
    """Values learnt from train (a policy may) match dev rows only as often as chance has them match."""
    train = card_frame(50_000, seed=2)
    copied = train.loc[train.Class == 1, "V14"].head(10).tolist() + train["V4"].head(20).round(5).tolist()
    result = scan_literals(_rules(copied), holdout_ids=frozenset(), dev_values=DEV_VALUES)
    assert result.passed, result.detail


def test_tuned_and_round_constants_never_count():
    """Optuna writes floats with every digit; people write round ones; neither points at a dev row."""
    rng = np.random.default_rng(3)
    tuned = "\n".join(f"C{i} = {float(v)!r}" for i, v in enumerate(rng.normal(0, 2, 60)))
    rounded = "\n".join(f"R{i} = {round(float(v), 5)!r}" for i, v in enumerate(rng.normal(0, 1, 60)))
    # The same values the dev frame holds, but as whole numbers or with under DEV_MIN_DIGITS significant digits.
    short = "S = (220.0, 0.08, 0.1, 1.5, 12.25, 300, 1234)\n"
    for source in (tuned, rounded, short):
        result = scan_literals(source, holdout_ids=frozenset(), dev_values=DEV_VALUES)
        assert result.passed, result.detail


def _domain_dev_values(frame: pd.DataFrame, domain) -> RowValues:
    cols = domain.columns
    skip = {cols.id, cols.time, cols.label, cols.entity, *cols.train_only, *cols.outcome_only}
    return row_values(frame, [c for c in cols.policy_columns(frame, with_label=False) if c not in skip])


SHIPPED = {name: (Path(__file__).resolve().parents[2] / "domains" / name / "policy.py").read_text()
           for name in ("fraud", "pricing", "routing")}


@pytest.mark.parametrize("data", ["fraud", "pricing", "routing", "card"])
def test_shipped_policies_pass_on_generated_and_card_like_data(data: str):
    from domains import get_domain

    if data == "card":
        values = DEV_VALUES
    else:
        domain = get_domain(data)
        values = _domain_dev_values(domain.generate(5, 2_000 if data == "routing" else 30_000), domain)
    for name, source in SHIPPED.items():
        result = scan_literals(source, holdout_ids=frozenset(), dev_values=values)
        assert result.passed, f"{name} on {data}: {result.detail}"
        assert result.figures["dev_matches"] == 0


def test_shipped_policies_pass_on_the_public_export():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import public_fraud

    csv = public_fraud.default_cache() / public_fraud.FILENAME
    if not csv.is_file():
        pytest.skip("public card-fraud export not cached (tests/domains/test_public_export.py fetches it)")
    export = pd.read_csv(csv)
    dev = export.iloc[200_000:250_000]
    values = row_values(dev, [c for c in dev.columns if c not in ("Time", "Class")])
    for name, source in SHIPPED.items():
        assert scan_literals(source, holdout_ids=frozenset(), dev_values=values).passed, name
    frauds = dev.loc[dev.Class == 1, "V14"].head(10).tolist()
    assert not scan_literals(_rules(frauds, lambda v: f"{v:.7f}"), holdout_ids=frozenset(), dev_values=values).passed


def test_row_values_keeps_non_whole_floats_of_the_named_columns():
    df = pd.DataFrame({"a": [1.5, 2.0, np.nan, np.inf, 1.5], "n": [10, 20, 30, 40, 50], "b": [True] * 5,
                       "s": ["x"] * 5, "c": [0.25, -3.125, 7.0, 0.25, 9.5]})
    values = row_values(df, ["a", "n", "b", "s", "c", "missing"])
    assert values.columns == ("a", "c") and values.rows == 5
    assert values.values.tolist() == [-3.125, 0.25, 1.5, 9.5]
    assert row_values(df, []).values.size == 0
