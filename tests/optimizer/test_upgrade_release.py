"""`ratchet upgrade` across real releases: a workspace sealed, and an experiment kept, by the wheel of an earlier
commit; the current code refuses it until `ratchet upgrade` replays its kept policies and records the new scorer
with a named approver; then the loop runs on and both audits are intact. A scorer changed after that upgrade is
refused again, a forged upgrade entry fails the audit, and an upgrade whose replay moves a metric needs
`--accept-changes`.

Every release runs in its own process, `python -P -m optimizer.cli`, with a working folder outside the repository
(no current code on sys.path by accident). The earlier release and the modified copies of the current code are
installed in their own virtual environments whose site-packages are hard links of this one's (the dependencies)
plus the release's own packages, and no editable finder: the sandbox server, which a workspace's run starts with a
scrubbed environment from the interpreter's own site-packages, imports the same release as its parent. Where hard
links cannot be made (another file system), the release runs from PYTHONPATH instead, and its sandbox server is
then the installed (current) code's. The wheel is built without build isolation when this environment has the build
backend the earlier commit asks for (setuptools>=77), else with it (pip fetches setuptools from the package index);
when neither can build it, the tests of the earlier release are skipped with pip's reasons.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from optimizer.base.tunables import rewrite
from tests.conftest import BASELINE, NOTHING, mlflow_store

ROOT = Path(__file__).resolve().parents[2]
OLD_COMMIT = "59d4bca80afae79fb8c0eb74e0efad1406df061a"  # the last commit before `ratchet upgrade` existed
PACKAGES = ("configs", "domains", "guards", "holdout", "optimizer")  # what the wheel installs
FAST = BASELINE.replace("N_ESTIMATORS = 300 ", "N_ESTIMATORS = 60 ")  # an honest keep over NOTHING, quickly
NEXT = rewrite(FAST, {"THRESHOLD": 0.5})  # the candidate tried once a workspace is upgraded
SETTINGS = {("data", "rows"): 20_000, ("seal", "canaries"): 4, ("decision", "refits"): 0}  # small and fast
APPROVER, REASON = "Ada Auditor", "new ratchet release: scorer sources changed"
SCORER_PATH = re.compile(r"\b(?:domains|guards|holdout|optimizer)/[\w/]+\.py\b")
# The changed-decisions test moves one dev metric of every policy that catches fraud (the kept one), and nothing a
# verdict depends on: fraud_recall is neither the primary metric nor a guardrail.
RECALL = '"fraud_recall": caught / max(int(fraud.sum()), 1),'
RECALL_MOVED = '"fraud_recall": caught / (max(int(fraud.sum()), 1) + 1),'
TIMEOUT = 400


def _show(proc: subprocess.CompletedProcess) -> str:
    return (f"exit {proc.returncode}: {' '.join(map(str, proc.args[1:]))[:600]}\n--- stdout ---\n{proc.stdout[-6000:]}"
            f"\n--- stderr ---\n{proc.stderr[-6000:]}")


def _flat(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class Release:
    """One installed ratchet: its interpreter, PYTHONPATH (fallback only) and the folder its packages are in."""

    python: str
    pythonpath: str | None
    root: Path
    isolated: bool  # own site-packages: the sandbox server runs this release too

    def run(self, site: "Site", *args, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
        env = dict(site.env)
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return subprocess.run([self.python, "-P", "-m", "optimizer.cli", *map(str, args)], cwd=site.dir, env=env,
                              capture_output=True, text=True, timeout=timeout)

    def python_c(self, site: "Site", code: str, *, scrubbed: bool = False) -> str:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"} if scrubbed else dict(site.env)
        flags = ["-P", "-s"] if scrubbed else ["-P"]
        if self.pythonpath and not scrubbed:
            env["PYTHONPATH"] = self.pythonpath
        proc = subprocess.run([self.python, *flags, "-c", code], cwd=site.dir, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, _show(proc)
        return proc.stdout


CURRENT = Release(sys.executable, None, ROOT, True)  # this checkout, installed editable in this environment


@dataclass(frozen=True)
class Site:
    """A folder with one workspace (`ws`) and its own MLflow store; `env` is what every command there runs with."""

    dir: Path

    @property
    def ws(self) -> Path:
        return self.dir / "ws"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "RATCHET_SEAL_KEY", "RATCHET_FAULT", "ANTHROPIC_API_KEY")}
        env.update(MLFLOW_TRACKING_URI=f"sqlite:///{self.dir / 'mlflow.db'}", GIT_CONFIG_NOSYSTEM="1",
                   PIP_DISABLE_PIP_VERSION_CHECK="1")
        return env


def _site(folder: Path) -> Site:
    folder.mkdir(parents=True)
    mlflow_store(folder / "mlflow.db")  # a copy of the migrated empty store
    return Site(folder)


def _clone(site: Site, folder: Path) -> Site:
    """A private copy of the workspace and its MLflow store: what one test does to it no other test sees."""
    folder.mkdir(parents=True)
    shutil.copytree(site.ws, folder / "ws", symlinks=True)
    for db in site.dir.glob("mlflow.db*"):
        shutil.copyfile(db, folder / db.name)
    return Site(folder)


def _environment(dest: Path, *, wheel: Path | None = None, tree: Path | None = None) -> Release:
    """A release in its own virtual environment: this environment's packages as hard links (no copy of 2 GB),
    less any ratchet install, plus `wheel` installed or the packages of `tree` copied."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True, capture_output=True)
    python = dest / "bin" / "python"
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = Path(subprocess.run([str(python), "-P", "-c", where], check=True, capture_output=True,
                                  text=True).stdout.strip())
    here = Path(sysconfig.get_paths()["purelib"])
    shutil.rmtree(purelib)
    linked = subprocess.run(["cp", "-al", str(here), str(purelib)], capture_output=True).returncode == 0
    if linked:
        for entry in purelib.iterdir():  # the editable finder of this checkout, or a regular install of it
            if entry.name.startswith(("__editable__", "ratchet_loop")) or entry.name in PACKAGES:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        release = Release(str(python), None, purelib, True)
    else:  # another file system: the release from PYTHONPATH, its sandbox server from this environment
        shutil.rmtree(purelib, ignore_errors=True)
        purelib.mkdir(parents=True)
        target = dest / "packages"
        target.mkdir()
        release = Release(sys.executable, str(target), target, False)
    if wheel is not None:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                               str(release.root), str(wheel)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, _show(proc)
    if tree is not None:
        for name in PACKAGES:
            shutil.copytree(tree / name, release.root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return release


def _snapshot(dest: Path, source: Release, edit: tuple[str, str, str] | None = None) -> Release:
    """A copy of `source`'s packages as a release of its own, with one `edit` (path, old text, new text)."""
    release = _environment(dest, tree=source.root)
    if edit is not None:
        path, old, new = edit
        text = (release.root / path).read_text()
        assert text.count(old) == 1, f"{path} no longer holds {old!r}: choose another small change for this test"
        (release.root / path).write_text(text.replace(old, new))
    return release


def _build_wheel(tmp: Path) -> Path:
    """The wheel of OLD_COMMIT, built from `git archive` (no worktree left in the repository)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"],
                           capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"commit {OLD_COMMIT[:12]} is not in this repository (a shallow clone?)")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", OLD_COMMIT], check=True,
                             capture_output=True).stdout
    src = tmp / "src"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(src, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    failures = []
    # Without build isolation first (offline; needs setuptools>=77 and its bdist_wheel here), then with it (pip
    # fetches the build requirements from the package index).
    for isolation in (["--no-build-isolation"], []):
        dist = tmp / ("dist-offline" if isolation else "dist-index")
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation,
                               "--timeout", "20", "--retries", "1", "-w", str(dist), str(src)],
                              capture_output=True, text=True, timeout=300, cwd=tmp,
                              env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
        wheels = sorted(dist.glob("ratchet_loop-*.whl"))
        if proc.returncode == 0 and wheels:
            return wheels[0]
        failures.append(f"pip wheel {' '.join(isolation) or '(build isolation)'}: {proc.stderr.strip()[-800:]}")
    pytest.skip(f"cannot build the wheel of {OLD_COMMIT[:12]} here: " + " | ".join(failures))


def _config(release: Release, dest: Path) -> Path:
    """The release's own fraud configuration, made small (20k rows, 4 canaries, no refits)."""
    config = yaml.safe_load((release.root / "configs" / "fraud.yaml").read_text())
    for (section, key), value in SETTINGS.items():
        config[section][key] = value
    dest.write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def _seal_and_keep(release: Release, site: Site) -> None:
    """`ratchet init` from NOTHING, then `ratchet try --keep` of FAST: one kept experiment, exp-0001."""
    (site.dir / "nothing.py").write_text(NOTHING)
    (site.dir / "fast.py").write_text(FAST)
    config = _config(release, site.dir / "fraud.yaml")
    init = release.run(site, "init", "fraud", "--workspace", site.ws, "--config", config,
                       "--policy", site.dir / "nothing.py")
    assert init.returncode == 0, _show(init)
    kept = release.run(site, "try", site.ws, site.dir / "fast.py", "--keep", "--json")
    assert kept.returncode == 0, _show(kept)
    assert json.loads(kept.stdout)["kept"] is True, _show(kept)


def _try_next(release: Release, site: Site, *extra: str) -> subprocess.CompletedProcess:
    (site.dir / "next.py").write_text(NEXT)
    return release.run(site, "try", site.ws, site.dir / "next.py", "--json", *extra)


def _audit(release: Release, site: Site, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = release.run(site, "audit", site.ws, "--json", *extra)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = {"checks": []}
    return proc, report


def _failing(report: dict) -> dict[str, str]:
    return {c["check"]: c["detail"] for c in report["checks"] if not c["passed"]}


def _manifest(site: Site) -> dict:
    return json.loads((site.ws / "holdout" / "MANIFEST.json").read_text())


def _entries(site: Site):
    from holdout.ledger import Ledger

    return Ledger(site.ws / "ledger.duckdb").entries()


def _upgrades(site: Site) -> list[dict]:
    return [e.data for e in _entries(site) if e.kind == "upgrade"]


def _changed_sources(site: Site, release: Release) -> list[str]:
    """The sealed scorer paths whose file in `release` differs from the seal's digest (or is gone)."""
    changed = []
    for rel, digest in _manifest(site)["scorer_sha256"].items():
        path = release.root / rel
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            changed.append(rel)
    return changed


def _assert_refused(proc: subprocess.CompletedProcess, named: list[str]) -> None:
    """Exit 2, an error that says to run `ratchet upgrade` and names a changed module."""
    assert proc.returncode == 2, _show(proc)
    text = _flat(proc.stderr)
    assert "ratchet upgrade" in text, _show(proc)
    if named:
        assert any(path in text for path in named), f"none of {named} named:\n{_show(proc)}"
    else:
        assert SCORER_PATH.search(text), f"no scorer module named:\n{_show(proc)}"


# --- the earlier release -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def old_release(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("old-release")
    yield _environment(tmp / "env", wheel=_build_wheel(tmp))
    shutil.rmtree(tmp, ignore_errors=True)  # tens of thousands of hard links: not kept for pytest's later runs


@pytest.fixture(scope="module")
def old_version(old_release, tmp_path_factory) -> str:
    site = Site(tmp_path_factory.mktemp("old-version"))
    return old_release.python_c(site, "import optimizer; print(optimizer.__version__)").strip()


@pytest.fixture(scope="module")
def old_site(old_release, _mlflow_template, tmp_path_factory) -> Site:
    """A workspace sealed by the earlier release, with exp-0001 kept by it. Never changed: tests work on clones."""
    site = _site(tmp_path_factory.mktemp("old-site") / "site")
    _seal_and_keep(old_release, site)
    return site


@pytest.fixture(scope="module")
def upgraded(old_site, tmp_path_factory) -> Site:
    """A clone of the old workspace: the current code refuses it, then `ratchet upgrade` records the new scorer."""
    site = _clone(old_site, tmp_path_factory.mktemp("upgraded") / "site")
    _assert_refused(_try_next(CURRENT, site), _changed_sources(site, CURRENT))
    proc = CURRENT.run(site, "upgrade", site.ws, "--approved-by", APPROVER, "--reason", REASON)
    assert proc.returncode == 0, _show(proc)
    assert "upgrade recorded" in _flat(proc.stdout + proc.stderr), _show(proc)
    return site


def test_old_release_is_the_earlier_code(old_release, old_site):
    """The old release imports its own packages, not this checkout, in the CLI and in the sandbox server."""
    where = json.loads(old_release.python_c(old_site, "import json, optimizer, guards, holdout, domains, configs; "
                                            "print(json.dumps({m.__name__: m.__file__ for m in (optimizer, guards, "
                                            "holdout, domains, configs)}))"))
    for name, path in where.items():
        assert Path(path).is_relative_to(old_release.root) and not Path(path).is_relative_to(ROOT), where
    assert not (old_release.root / "holdout" / "upgrades.py").exists()  # the earlier commit has no upgrade
    if old_release.isolated:  # how the sandbox server is started: a scrubbed environment, -P -s
        server = old_release.python_c(old_site, "import optimizer.sandbox._server as s; print(s.__file__)",
                                      scrubbed=True).strip()
        assert Path(server).is_relative_to(old_release.root), server


def test_old_release_sealed_and_kept(old_site, old_version):
    manifest = _manifest(old_site)
    assert manifest["tool_version"] == old_version
    assert "guards/significance.py" in manifest["scorer_sha256"]
    kinds = [e.kind for e in _entries(old_site)]
    assert kinds[:2] == ["seal", "baseline"] and "experiment" in kinds, kinds
    kept = [e.data for e in _entries(old_site) if e.kind == "experiment" and e.data.get("kept")]
    assert [k["experiment"] for k in kept] == ["exp-0001"], kept
    assert set(kept[0]["decisions_sha256"]) == {"dev", "holdout"}
    head = subprocess.run(["git", "-C", str(old_site.ws), "log", "-1", "--format=%H %s"], capture_output=True,
                          text=True, check=True).stdout
    assert head.startswith(kept[0]["commit"]) and "exp-0001: keep" in head, head


def test_release_bumps_the_version(old_version):
    """A release that changes scorer sources says so in its version: the audit names the two."""
    import optimizer

    assert optimizer.__version__ != old_version, (
        f"optimizer.__version__ is still {old_version}, the version of the release that sealed the old workspace")


@pytest.mark.parametrize("command", ["try", "run", "reseal"])
def test_current_release_refuses_an_old_workspace(old_site, tmp_path, command):
    site = _clone(old_site, tmp_path / "site")
    named = _changed_sources(site, CURRENT)
    if command == "try":
        proc = _try_next(CURRENT, site)
    elif command == "run":
        proc = CURRENT.run(site, "run", site.ws, "--experiments", "1", "--proposer", "optuna")
    else:
        proc = CURRENT.run(site, "reseal", site.ws, "--seed", "11")
    _assert_refused(proc, named)


def test_upgrade_records_the_replay(upgraded, old_site, old_version):
    import optimizer

    found = _upgrades(upgraded)
    assert len(found) == 1, found
    up = found[0]
    assert {"from_version", "to_version", "approved_by", "reason", "identical", "accepted_changes", "changes",
            "replayed", "sources"} <= set(up), sorted(up)
    assert (up["from_version"], up["to_version"]) == (old_version, optimizer.__version__)
    assert (up["approved_by"], up["reason"]) == (APPROVER, REASON)
    assert up["identical"] is True and up["accepted_changes"] is False and up["changes"] == [], up["changes"]
    assert up["sources"]["old"] == _manifest(old_site)["scorer_sha256"]
    assert up["sources"]["new"] != up["sources"]["old"]
    recorded = {e.data["commit"]: e.data for e in _entries(old_site)
                if e.kind == "baseline" or (e.kind == "experiment" and e.data.get("kept"))}
    assert len(recorded) == 2 and set(recorded) <= {r["commit"] for r in up["replayed"]}, up["replayed"]
    for item in up["replayed"]:
        assert {"policy", "commit", "decisions_sha256", "dev_metrics", "holdout_metrics"} <= set(item), item
        assert set(item["decisions_sha256"]) == {"dev", "holdout"}, item
        if item["commit"] in recorded:  # identical: the figures the old release recorded
            assert item["decisions_sha256"] == recorded[item["commit"]]["decisions_sha256"], item
            assert item["dev_metrics"] == pytest.approx(recorded[item["commit"]]["dev_metrics"], rel=1e-9), item


def test_loop_runs_on_after_the_upgrade_and_audits_intact(upgraded, old_version, tmp_path):
    import optimizer

    site = _clone(upgraded, tmp_path / "site")
    proc = _try_next(CURRENT, site, "--keep")
    assert proc.returncode in (0, 1), _show(proc)  # judged: kept (0) or rejected (1), not refused (2)
    verdict = json.loads(proc.stdout)
    assert {r["guard"]: r["passed"] for r in verdict["reasons"]}.get("integrity") is True, verdict

    proc, report = _audit(CURRENT, site, "--html", tmp_path / "audit.html")
    assert proc.returncode == 0, f"{_failing(report)}\n{_show(proc)}"
    scorer = [c for c in report["checks"] if c["check"] == "scorer_source"]
    assert len(scorer) == 1 and scorer[0]["passed"], scorer
    for word in (old_version, optimizer.__version__, APPROVER):
        assert word in scorer[0]["detail"], f"{word!r} not in {scorer[0]['detail']!r}"
    page = (tmp_path / "audit.html").read_text()  # the upgrade among the approved events, with its approver
    row = next((r for r in page.split("<tr>") if "<td>upgrade</td>" in r), "")
    assert APPROVER in row and f"ratchet {old_version} -&gt; {optimizer.__version__}" in row, row or page[-3000:]

    proc, report = _audit(CURRENT, site, "--replay")
    assert proc.returncode == 0, f"{_failing(report)}\n{_show(proc)}"
    replays = [c for c in report["checks"] if c["check"] == "replay"]
    assert any("exp-0001" in c["detail"] for c in replays), replays
    for check in replays:
        if "exp-0001" in check["detail"] or "baseline" in check["detail"]:  # kept under the old, replayed new
            assert old_version in check["detail"] and optimizer.__version__ in check["detail"], check


def test_scorer_changed_after_the_upgrade_is_refused(upgraded, tmp_path):
    """One comment added to a guard of a copy of the current code: refused again, that file named."""
    site = _clone(upgraded, tmp_path / "site")
    tampered = _snapshot(tmp_path / "tampered", CURRENT)
    try:
        with open(tampered.root / "guards" / "significance.py", "a") as fh:
            fh.write("\n# a comment is a change of the scorer too\n")
        _assert_refused(_try_next(tampered, site), ["guards/significance.py"])
    finally:
        shutil.rmtree(tmp_path / "tampered", ignore_errors=True)


def test_forged_upgrade_figures_fail_the_audit(upgraded, tmp_path):
    """Someone with write access appends, through the ledger's own API (the chain stays intact), a second upgrade
    that claims a replayed dev metric the replay never produced."""
    from holdout.ledger import Kind, Ledger

    site = _clone(upgraded, tmp_path / "site")
    ledger = Ledger(site.ws / "ledger.duckdb")
    payload = json.loads(json.dumps(_upgrades(site)[-1]))
    payload["sources"]["old"] = payload["sources"]["new"]  # consistent with the span it follows: only figures lie
    payload["from_version"] = payload["to_version"]
    kept = [r for r in payload["replayed"] if r["dev_metrics"].get("net_savings", 0) > 0]
    assert kept, payload["replayed"]
    kept[0]["dev_metrics"]["net_savings"] += 1.0
    forged = ledger.append(Kind.UPGRADE, payload)
    proc, report = _audit(CURRENT, site)
    assert proc.returncode == 1, f"{report}\n{_show(proc)}"
    failing = _failing(report)
    assert "ledger_chain" not in failing, failing
    assert any("upgrade" in d and re.search(rf"\b{forged.seq}\b", d) for d in failing.values()), (
        f"no failing check names upgrade entry {forged.seq}: {failing}")


def test_upgrade_entry_edited_in_place_breaks_the_chain(upgraded, tmp_path):
    import duckdb

    site = _clone(upgraded, tmp_path / "site")
    entry = [e for e in _entries(site) if e.kind == "upgrade"][-1]
    payload = entry.data
    payload["approved_by"] = "Mallory"
    con = duckdb.connect(str(site.ws / "ledger.duckdb"))
    try:
        con.execute("UPDATE ledger SET payload = ? WHERE seq = ?", [json.dumps(payload, sort_keys=True,
                                                                               separators=(",", ":")), entry.seq])
    finally:
        con.close()
    proc, report = _audit(CURRENT, site)
    assert proc.returncode == 1, _show(proc)
    assert "ledger_chain" in _failing(report), _failing(report)


# --- a release whose replay moves a metric -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """A copy of the current code, and the same copy with fraud_recall computed differently."""
    tmp = tmp_path_factory.mktemp("releases")
    base = _snapshot(tmp / "base", CURRENT)
    yield base, _snapshot(tmp / "moved", base, ("domains/fraud/adapter.py", RECALL, RECALL_MOVED))
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def current_site(releases, _mlflow_template, tmp_path_factory) -> Site:
    """A workspace sealed by (a copy of) the current code, with exp-0001 kept."""
    site = _site(tmp_path_factory.mktemp("current-site") / "site")
    _seal_and_keep(releases[0], site)
    return site


def test_nothing_to_upgrade_when_the_scorer_is_in_force(releases, current_site, tmp_path):
    site = _clone(current_site, tmp_path / "site")
    proc = releases[0].run(site, "upgrade", site.ws, "--approved-by", APPROVER, "--reason", REASON)
    assert proc.returncode == 0, _show(proc)
    assert "nothing to upgrade" in _flat(proc.stdout + proc.stderr), _show(proc)
    assert _upgrades(site) == []


def test_changed_decisions_need_accept_changes(releases, current_site, tmp_path):
    base, moved = releases
    site = _clone(current_site, tmp_path / "site")
    assert _changed_sources(site, moved) == ["domains/fraud/adapter.py"]
    _assert_refused(_try_next(moved, site), ["domains/fraud/adapter.py"])

    proc = moved.run(site, "upgrade", site.ws, "--approved-by", APPROVER, "--reason", REASON)
    assert proc.returncode == 1, _show(proc)
    assert "--accept-changes" in proc.stderr and "fraud_recall" in proc.stderr, _show(proc)
    assert _upgrades(site) == [], "an upgrade with unaccepted changes was recorded"
    _assert_refused(_try_next(moved, site), ["domains/fraud/adapter.py"])

    proc = moved.run(site, "upgrade", site.ws, "--approved-by", APPROVER, "--reason", REASON, "--accept-changes")
    assert proc.returncode == 0, _show(proc)
    text = _flat(proc.stdout + proc.stderr)
    assert "upgrade recorded" in text and "changes accepted" in text, _show(proc)
    [up] = _upgrades(site)
    assert up["identical"] is False and up["accepted_changes"] is True, up
    assert up["changes"] and any("fraud_recall" in c for c in up["changes"]), up["changes"]
    assert up["approved_by"] == APPROVER

    proc = _try_next(moved, site)
    assert proc.returncode in (0, 1), _show(proc)  # judged under the accepted scorer
    proc, report = _audit(moved, site)
    assert proc.returncode == 0, f"{_failing(report)}\n{_show(proc)}"
    # The copy without the change is now the one that differs from the scorer in force.
    _assert_refused(_try_next(base, site), ["domains/fraud/adapter.py"])
