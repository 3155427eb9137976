"""The scorer's ranking metrics equal scikit-learn's on any scores, ties included."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from domains._ranking import roc_pr_auc


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]) | st.floats(0, 1)),
                min_size=2, max_size=400))
def test_equal_to_sklearn(pairs):
    labels = np.array([p for p, _ in pairs])
    scores = np.array([s for _, s in pairs])
    if labels.all() or not labels.any():
        with pytest.raises(ValueError, match="both label classes"):
            roc_pr_auc(labels, scores)
        return
    roc, ap = roc_pr_auc(labels, scores)
    assert roc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert ap == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_a_perfect_and_a_reversed_ranking():
    labels = np.array([0, 0, 1, 1], dtype=bool)
    assert roc_pr_auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == (1.0, 1.0)
    roc, ap = roc_pr_auc(labels, np.array([0.9, 0.8, 0.2, 0.1]))
    assert roc == 0.0 and ap == pytest.approx(average_precision_score(labels, [0.9, 0.8, 0.2, 0.1]))
