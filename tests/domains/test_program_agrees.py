"""program.md and the baseline policy's docstring quote the shipped config: its guardrails with their numbers, the
imports the static guard allows, the sandbox budget. A config change that leaves them stale fails here, naming the
file, the line and the value the config holds."""
from __future__ import annotations

import re

import pytest

from domains import DOMAINS, get_domain
from optimizer.workspace.config import default_config_path, merged_guardrails, parse_config, read_yaml

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
NAMES = {"scikit-learn": "sklearn"}  # how the texts name an importable module


def _config(domain: str):
    return parse_config(read_yaml(default_config_path(domain)), source=f"configs/{domain}.yaml")


def _numbers(text: str) -> list[float]:
    return [float(n) for n in NUMBER.findall(text)]


def _imports(text: str) -> set[str]:
    """The modules a rule like 'Imports (...): numpy, pandas and math. No files' or 'Imports are limited to numpy
    and math; no files' names."""
    listed = re.split(r"; |\. |\.$", re.split(r"limited to|Imports[^:]*:", text, maxsplit=1)[-1])[0]
    words = [w.strip(" `") for w in re.split(r",|\band\b", listed)]
    return {NAMES.get(w, w) for w in words if w}


@pytest.mark.parametrize("domain", DOMAINS)
def test_program_quotes_every_guardrail_with_its_numbers(domain):
    d, config = get_domain(domain), _config(domain)
    program = d.program.read_text()
    for spec in merged_guardrails(d.guardrails, config.guardrails, domain):
        lines = [ln for ln in program.splitlines() if ln.lstrip().startswith("- ") and f"`{spec.metric}`" in ln]
        assert lines, f"{d.program}: no bullet names guardrail `{spec.metric}` ({spec.kind})"
        quoted = _numbers(lines[0])
        for key in ("limit", "tolerance", "margin"):
            value = getattr(spec, key)
            if value is not None:
                assert any(abs(q - value) < 1e-12 for q in quoted), (
                    f"{d.program}: the `{spec.metric}` line does not quote its {key} {value:g} "
                    f"(configs/{domain}.yaml): {lines[0].strip()!r}")
    named = re.findall(r"`(\w+)` \((?:capacity|harm|fairness)\)", program)
    extra = set(named) - {s.metric for s in merged_guardrails(d.guardrails, config.guardrails, domain)}
    assert not extra, f"{d.program} quotes guardrails the config does not have: {sorted(extra)}"


@pytest.mark.parametrize("domain", DOMAINS)
def test_program_and_policy_name_the_allowed_imports(domain):
    d, config = get_domain(domain), _config(domain)
    allowed = set(config.static.allowed_imports) - {"__future__"}
    line = next((ln for ln in d.program.read_text().splitlines() if ln.lstrip().startswith("- Imports")), None)
    assert line, f"{d.program}: no '- Imports' rule"
    assert _imports(line) == allowed, f"{d.program}: {line.strip()!r} is not static.allowed_imports {sorted(allowed)}"
    doc = d.baseline_policy.read_text().split('"""')[1]
    sentence = next((s for s in doc.replace("\n", " ").split(". ") if "Imports are limited to" in s), None)
    assert sentence, f"{d.baseline_policy}: the docstring does not say which imports are allowed"
    assert _imports(sentence) == allowed, f"{d.baseline_policy}: {sentence!r} is not {sorted(allowed)}"


@pytest.mark.parametrize("domain", DOMAINS)
def test_program_quotes_the_sandbox_budget(domain):
    d, config = get_domain(domain), _config(domain)
    lines = [ln for ln in d.program.read_text().splitlines() if "wall-clock" in ln]
    assert lines, f"{d.program}: no line names the wall-clock budget"
    assert config.sandbox.budget_s in _numbers(" ".join(lines)), (
        f"{d.program}: the wall-clock budget quoted is not sandbox.budget_s {config.sandbox.budget_s:g} s")


def test_fraud_program_quotes_the_decline_cost():
    config = _config("fraud")
    goal = get_domain("fraud").program.read_text().split("## ")[1]
    assert config.scoring.decline_cost in _numbers(goal), "domains/fraud/program.md: decline cost not as configured"
