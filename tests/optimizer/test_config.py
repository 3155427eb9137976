import pytest

from optimizer.base.errors import RatchetError
from optimizer.workspace.config import default_config_path, load_config


@pytest.mark.parametrize("domain", ["fraud", "pricing", "routing"])
def test_shipped_config_is_valid(domain):
    cfg = load_config(default_config_path(domain))
    assert cfg.domain == domain and cfg.scoring.domain == domain
    assert abs(cfg.split.train + cfg.split.dev + cfg.split.holdout - 1) < 1e-9


def test_scoring_section_follows_the_domain(tmp_path):
    """Each domain reads its own scoring keys: a fraud key in a pricing config is refused, by name."""
    p = tmp_path / "c.yaml"
    p.write_text("domain: pricing\nscoring:\n  decline_cost: 5\n")
    with pytest.raises(RatchetError, match=r"scoring\.pricing\.decline_cost"):
        load_config(p)
    p.write_text("domain: pricing\nscoring:\n  price_grid: [1.0, 1.0]\n")
    with pytest.raises(RatchetError, match="distinct multipliers"):
        load_config(p)


@pytest.mark.parametrize("text, field", [
    ("bogus: 1\n", "bogus"),
    ("split:\n  train: lots\n", "split.train"),
    ("sandbox:\n  budget_s: -1\n", "sandbox.budget_s"),
    ("split:\n  train: 0.9\n", "train + dev + holdout"),
    ("guardrails:\n  false_decline_rate: {tolerance: 0.1, margin: -1}\n", "guardrails.false_decline_rate.margin"),
    ("guardrails:\n  alert_rate: {floor: 0.1}\n", "floor is now tolerance"),
    ("guardrails:\n  alert_rate: {margin: 0.1}\n", "guardrails.alert_rate: guardrail alert_rate (capacity): margin "
                                                     "applies to harm guardrails only"),
    ("guardrails:\n  alert_rate: {kind: harm}\n", "alert_rate is a capacity guardrail of fraud, not harm"),
    ("guardrails:\n  recall: {limit: 0.5}\n", "fraud has no guardrail 'recall'; its guardrails are false_decline_rate"),
    ("guardrails:\n  alert_rate: {limit: high}\n", "guardrails.alert_rate.limit"),
    ("gate:\n  threshold: 0.02\n", "threshold (metric units) is now threshold_se"),  # metric units are gone, not reinterpreted
    ("gate:\n  step_se: -1\n", "gate.step_se"),
    ("sandbox:\n  budget_s: 1.0e+308\n", "sandbox.budget_s"),  # every `try` died with OverflowError
    ("guardrails:\n  alert_rate: {limit: .nan}\n", "guardrails.alert_rate.limit"),  # a NaN limit never fails
    ("static:\n  max_policy_bytes: 100000000\n", "static.max_policy_bytes"),
])
def test_bad_config_names_the_field(tmp_path, text, field):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(RatchetError) as info:
        load_config(p)
    assert field in str(info.value) and str(p) in str(info.value)


def test_not_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("a: [1, 2\n")
    with pytest.raises(RatchetError, match="not valid YAML"):
        load_config(p)


def test_mlflow_package_is_not_shadowed():
    """mlflow/ at the repo root holds the store; `import mlflow` must still be the installed package."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert not (root / "mlflow" / "__init__.py").exists()
    out = subprocess.run([sys.executable, "-c", "import mlflow, sys; print(mlflow.__file__); print(hasattr(mlflow, 'start_run'))"],
                         cwd=root, capture_output=True, text=True, check=True).stdout.split()
    assert "site-packages" in out[0] and out[1] == "True"
