"""Static scan: honest policies pass; each way of reaching files, processes or reflection is caught."""
from __future__ import annotations

import textwrap

import pytest

from guards import GuardName
from guards.static import Finding, findings, has_contract, scan

ALLOWED = ("numpy", "pandas", "scipy", "sklearn", "xgboost", "math", "statistics", "collections", "functools",
           "itertools", "dataclasses", "typing", "__future__")

HONEST = textwrap.dedent('''
    """A fraud policy: logistic regression on amount features."""
    from __future__ import annotations

    import math
    from collections import defaultdict
    from dataclasses import dataclass

    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    THRESHOLD = 0.62  # tunable
    BANDS = [0.0, 20.0, 100.0, 500.0]


    class Model:
        def __init__(self, clf, means):
            self._clf = clf
            self._means = means


    @dataclass
    class Spend(dict):
        def __init__(self):
            super().__init__()


    def _features(rows: pd.DataFrame, means) -> np.ndarray:
        amount = rows["amount"].to_numpy(dtype=float)
        mean = rows["customer_id"].map(means).fillna(amount.mean()).to_numpy()
        return np.column_stack([np.log1p(amount), amount / (mean + 1.0)])


    def fit(train: pd.DataFrame) -> Model:
        means = train.groupby("customer_id")["amount"].mean().to_dict()
        clf = LogisticRegression(max_iter=200).fit(_features(train, means), train["is_fraud"])
        counts = defaultdict(int)
        for c in train["customer_id"].head(10):
            counts[c] += 1
        return Model(clf, means)


    def decide(model: Model, rows: pd.DataFrame) -> np.ndarray:
        score = model._clf.predict_proba(_features(rows, model._means))[:, 1]
        ts = pd.to_datetime(rows["ts"]).to_numpy()
        label = getattr(model, "name", "policy")
        waits = rows.get("load_time")
        return np.clip(score, 0.0, 1.0) if math.isfinite(THRESHOLD) and len(ts) >= 0 else score


    if __name__ == "__main__":
        print(f"{THRESHOLD:.2f} {len(BANDS)}")
''')


def rules(source: str, **kw) -> list[tuple[int, str]]:
    return [(f.line, f.rule) for f in findings(source, allowed_imports=ALLOWED, **kw)]


def test_honest_policy_passes():
    result = scan(HONEST, allowed_imports=ALLOWED)
    assert result.passed, result.detail
    assert result.name is GuardName.STATIC and result.figures["findings"] == 0


@pytest.mark.parametrize("snippet, rule", [
    ("import os", "import"),
    ("import subprocess as sp", "import"),
    ("import requests", "import"),
    ("from os import path", "import"),
    ("from . import helpers", "import"),
    ("from .data import rows", "import"),
    ("from numpy import *", "import"),
    ("from numpy import load", "import"),
    ("from pandas import read_csv as rc", "import"),
    ("from numpy.lib import npyio", "import"),
    ("import numpy.ctypeslib", "import"),
    ("from sklearn.utils import _joblib", "import"),
    ("x = open('/etc/passwd')", "builtin"),
    ("x = eval('1+1')", "builtin"),
    ("exec('x = 1')", "builtin"),
    ("c = compile('1', 'f', 'eval')", "builtin"),
    ("m = __import__('os')", "builtin"),
    ("g = globals()", "builtin"),
    ("v = vars(x)", "builtin"),
    ("breakpoint()", "builtin"),
    ("s = input()", "builtin"),
    ("f = getattr(np, name)", "reflection"),
    ("f = getattr(np, 'o' + 's')", "reflection"),
    ("setattr(np, '__doc__', 1)", "reflection"),
    ("f = getattr(np, 'load')", "reflection"),
    ("f = getattr(pd, 'read_csv')", "reflection"),
    ("g = getattr", "reflection"),
    ("from functools import reduce\nx = reduce(getattr, ['lib', 'npyio'], np)", "reflection"),
    ("m = np.os", "module"),
    ("s = pd.io.common.os", "module"),
    ("r = np.lib.npyio.DataSource", "module"),
    ("c = xgboost.core.ctypes", "module"),
    ("import sklearn\nj = sklearn.utils._joblib", "private"),
    ("c = np._core.multiarray", "private"),
    ("c = pd.DataFrame()._mgr", "private"),
    ("n = xgb.collective", "module"),
    ("k = np.ctypeslib", "module"),
    ("b = x.__class__", "dunder"),
    ("b = ().__class__.__bases__[0].__subclasses__()", "dunder"),
    ("g = fit.__globals__", "dunder"),
    ("d = np.__dict__['os']", "dunder"),
    ("b = __builtins__", "dunder"),
    ("c = fit.__code__", "dunder"),
    ("f = gen.gi_frame.f_back.f_globals", "introspection"),
    ("df = pd.read_csv('data.csv')", "io"),
    ("df = pd.read_parquet('data.parquet')", "io"),
    ("rows.to_csv('leak.csv')", "io"),
    ("rows.to_pickle('x.pkl')", "io"),
    ("a = np.load('x.npy')", "io"),
    ("np.save('x.npy', a)", "io"),
    ("np.savetxt('x.txt', a)", "io"),
    ("a = np.fromfile('x.bin')", "io"),
    ("a = np.memmap('x.bin')", "io"),
    ("a.tofile('x.bin')", "io"),
    ("a = np.genfromtxt('x.csv')", "io"),
    ("m.save_model('model.json')", "io"),
    ("m.load_model('model.json')", "io"),
    ("a.dump('x')", "io"),
    ("s = sklearn.datasets.fetch_openml('x')", "module"),
    ("rows.to_string('out.txt')", "io"),
    ("d = xgb.DMatrix('train.csv?format=csv')", "io"),
    ("b = xgb.Booster(model_file='m.json')", "io"),
    ("r = rows.query('amount > @x')", "io"),
    ("it = xgb.DataIter(cache_prefix='/tmp/c')", "io"),
    ("with np.testing.tempdir() as d:\n    pass", "io"),
    ("r = rows.apply('to_csv', args=('f',))", "string-call"),
    ("r = rows.agg('__class__')", "string-call"),
    ("s = '{0.__class__.__init__.__globals__}'.format(x)", "format"),
    ("TABLE = '" + "x" * 2001 + "'", "literal"),
    ("IDS = [" + ", ".join(str(i) for i in range(201)) + "]", "collection"),
    ("IDS = {" + ", ".join(f"{i}: 1" for i in range(201)) + "}", "collection"),
    ("PAIRS = [" + ", ".join(f"({i}, 1)" for i in range(120)) + "]", "collection"),
    ("import sklearn.metrics\nsklearn.metrics.roc_auc_score = lambda *a, **k: 1.0", "monkeypatch"),
    ("from sklearn import metrics\nmetrics.average_precision_score = None", "monkeypatch"),
    ("np.random.seed = print", "monkeypatch"),
    ("del pd.DataFrame.mean", "monkeypatch"),
    ("setattr(pd.DataFrame, 'mean', len)", "monkeypatch"),
    ("def fit(train):\n    return (\n", "syntax"),
])
def test_gaming_source_is_caught(snippet: str, rule: str):
    source = "import numpy as np\nimport pandas as pd\n" + snippet + "\n"
    found = rules(source)
    assert rule in {r for _, r in found}, found
    result = scan(source, allowed_imports=ALLOWED)
    assert not result.passed
    first = min(line for line, _ in found)
    assert f"line {first}:" in result.detail


def test_match_class_pattern_cannot_read_dunders():
    source = "match x:\n    case object(__class__=c):\n        pass\n"
    assert ("dunder") in {r for _, r in rules(source)}


def test_detail_names_line_and_allow_list():
    result = scan("import numpy\n\nimport os\n", allowed_imports=("numpy", "pandas"))
    assert not result.passed
    assert "line 3: import of 'os' is not allowed (allowed: numpy, pandas)" in result.detail
    assert result.figures["first_line"] == 3 and result.figures["rules"] == "import"


def test_allow_list_is_the_callers():
    source = "import xgboost\n"
    assert scan(source, allowed_imports=("xgboost",)).passed
    assert not scan(source, allowed_imports=("numpy",)).passed


def test_banned_module_stays_banned_even_if_allowed():
    assert not scan("import os\n", allowed_imports=("os",)).passed


def test_limits_are_configurable_and_exact():
    at_limit = "IDS = [" + ", ".join("1" for _ in range(200)) + "]\n"
    assert scan(at_limit, allowed_imports=ALLOWED).passed
    assert not scan(at_limit, allowed_imports=ALLOWED, max_collection_items=199).passed
    text = "S = '" + "x" * 2000 + "'\n"
    assert scan(text, allowed_imports=ALLOWED).passed
    assert not scan(text, allowed_imports=ALLOWED, max_literal_len=1999).passed


def test_syntax_error_has_line():
    found = findings("x = 1\ny = (\n", allowed_imports=ALLOWED)
    assert len(found) == 1 and found[0].rule == "syntax" and found[0].line >= 2
    assert isinstance(found[0], Finding)


def test_many_findings_are_capped_in_detail():
    source = "\n".join(f"x{i} = eval('1')" for i in range(30))
    result = scan(source, allowed_imports=ALLOWED)
    assert result.figures["findings"] == 30 and "and 15 more" in result.detail


def test_has_contract():
    assert has_contract(HONEST) == []
    assert has_contract("def fit(train):\n    return 1\n") == ["decide"]
    assert has_contract("class P:\n    def fit(self): ...\n    def decide(self): ...\n") == ["fit", "decide"]
    assert has_contract("def fit(:\n") == ["fit", "decide"]
    assert has_contract("def go(): ...\n", required=("go",)) == []
