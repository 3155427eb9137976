import pytest

from optimizer.config import default_config_path, load_config
from optimizer.errors import RatchetError


def test_shipped_config_is_valid():
    cfg = load_config(default_config_path("fraud"))
    assert cfg.domain == "fraud" and abs(cfg.split.train + cfg.split.dev + cfg.split.holdout - 1) < 1e-9


@pytest.mark.parametrize("text, field", [
    ("bogus: 1\n", "bogus"),
    ("split:\n  train: lots\n", "split.train"),
    ("sandbox:\n  budget_s: -1\n", "sandbox.budget_s"),
    ("split:\n  train: 0.9\n", "train + dev + holdout"),
    ("guardrails:\n  alert_rate: {floor: 0.1}\n", "guardrails.alert_rate.margin"),
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
