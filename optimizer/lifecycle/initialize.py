"""`ratchet init`: data -> contract -> split -> seal-time checks -> seal -> ledger -> MLflow.

Everything is built in a temporary sibling folder and moved into place at the end, so a refusal
or a crash leaves nothing half-made behind.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd
import yaml

from domains import Domain, get_domain
from holdout import scorer
from holdout.hashing import content_hash, sha256_file
from holdout.ledger import Kind, Ledger
from holdout.seal import check_contamination, plant_canaries, seal_holdout
from holdout.split import AUTO_GAP_MAX_DAYS, AUTO_GAP_SHARE, span_days, split_by_time
from optimizer import __version__
from optimizer.base.errors import RatchetError
from optimizer.base.faults import fault
from optimizer.workspace.config import RunConfig, default_config_path, dump_config, parse_config, read_yaml
from optimizer.workspace.layout import Workspace

Progress = Callable[[str], None]


@dataclass(frozen=True)
class InitResult:
    workspace: Workspace
    manifest_sha256: str
    rows: dict[str, int]
    mlflow_run_id: str
    drift: dict[str, Any]
    leakage: dict[str, Any]
    notes: tuple[str, ...] = ()  # how an imported file was read (time unit, categories), for the person
    gap: str = ""  # the gap between splits and where it came from, for the person


def source_root() -> Path:
    """The folder the installed packages are in (scorer paths are relative to it)."""
    return scorer.root()


def scorer_files(domain: Domain) -> list[Path]:
    """The scorer's files: the modules holdout.scorer declares and the domain's adapter files."""
    return scorer.files(domain)


def _remove_stale_staging(target: Path) -> None:
    """Staging folders of inits of `target` whose process is gone (killed before the move)."""
    for folder in target.parent.glob(f".{target.name}.init-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def experiment_name(workspace: Path, manifest_sha: str) -> str:
    return f"ratchet-{workspace.name}-{manifest_sha[:12]}"


# The `ratchet init` (and `ratchet demo`) flag each dotted override comes from: a refused value names the flag and
# what it allows, not the YAML file.
FLAGS = {"seed": "--seed", "data.seed": "--seed", "data.rows": "--rows", "data.file": "--data", "data.mapping": "--map",
         "data.time_unit": "--time-unit", "data.epoch": "--epoch", "data.time_format": "--time-format"}


def _flag(dotted: str, value: Any) -> str:
    """How a person gave an override: `--rows 50`; a setting no flag sets (a --variant's) as `KEY=VALUE`."""
    shown = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
    shown = shown.removesuffix("\n...").strip()
    return f"{FLAGS[dotted]} {shown}" if dotted in FLAGS else f"{dotted}={shown}"


def resolve_config(domain: str, *, config_file: Path | None, overrides: Mapping[str, Any]) -> RunConfig:
    """The domain's shipped config (or `config_file`, which may leave the domain out) with dotted overrides. A problem
    in the file is the file's ("Fix the YAML"); one with an override names its flag, what it allows and the closest
    allowed value."""
    source = str(config_file or f"configs/{domain}.yaml")
    raw = read_yaml(config_file or default_config_path(domain))
    if raw.setdefault("domain", domain) != domain:
        raise RatchetError(f"{source}: the config is for domain {raw['domain']!r}, not {domain!r}; pass a config of "
                           f"{domain} or leave its domain key out.")
    data = parse_config(raw, source=source).model_dump(mode="json")
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return parse_config(data, source=source, given={k: _flag(k, v) for k, v in overrides.items()})


def load_data(domain: Domain, config: RunConfig, progress: Progress) -> pd.DataFrame:
    if config.data.source == "file":
        from domains._importing import TimeReading

        if config.data.file is None:
            raise RatchetError("data.source is file but data.file is not set: give the file with --data FILE, "
                               "or set data.file in the config")
        progress(f"importing {config.data.file}")
        frame = domain.load(Path(config.data.file), config.data.mapping,
                            TimeReading(config.data.time_unit, config.data.epoch, config.data.time_format))
        source = str(config.data.file)
        for note in frame.attrs.get("import_notes", ()):
            progress(note)
    else:
        progress(f"generating ~{config.data.rows:,} {domain.name} rows (seed {config.data.seed})")
        frame = domain.generate(config.data.seed, config.data.rows)
        source = "generated data"
    if len(frame) < MIN_ROWS:  # before the contract: "0 rows" says more than a failed row-count expectation
        raise RatchetError(f"{source}: {len(frame)} row(s); at least {MIN_ROWS} are needed to split train, dev and "
                           "a holdout by time. Import a longer history.")
    progress(f"checking the data contract on {len(frame):,} rows")
    domain.check_contract(frame, source=source)
    _both_outcomes(domain, frame, source)
    return frame


MIN_ROWS = 100  # below this no split leaves a holdout worth a query


def with_time_format(config: RunConfig, frame: pd.DataFrame) -> RunConfig:
    """`config` with data.time_format set to the format a text time column was read with (detected or given), so
    that reseal reads new data the same way."""
    found = frame.attrs.get("time_format")
    if config.data.source != "file" or not found or found == config.data.time_format:
        return config
    data = config.model_dump(mode="json")
    data["data"]["time_format"] = found
    return parse_config(data, source="data.time_format")


def _both_outcomes(domain: Domain, frame: pd.DataFrame, source: str) -> None:
    """Refuse a label with one value only: no holdout could measure anything on it."""
    label = domain.columns.label
    values = frame[label].dropna().unique()
    if len(values) < 2:
        first = values[0].item() if hasattr(values[0], "item") else values[0]
        seen = f"only {first!r}" if len(values) else "no value"
        raise RatchetError(f"{source}: column {label!r} (the label) holds {seen} in all {len(frame):,} rows; the "
                           "holdout could not tell a better policy from a worse one. Import a history with both "
                           "outcomes (check the --label mapping).")


def check_leakage(domain: Domain, frame: pd.DataFrame, config: RunConfig) -> dict[str, Any]:
    """A single visible column that predicts the label almost perfectly is refused."""
    from guards.contamination import label_leakage

    cols = domain.columns
    visible = [c for c in cols.policy_columns(frame, with_label=False) if c != cols.time]
    report = label_leakage(frame, cols.label, visible, threshold=config.seal.leakage_threshold)
    refused = [c for c in report["leaking"] if c not in domain.leakage_exempt]
    if refused:
        worst = ", ".join(f"'{c}' (AUC {report['auc'][c]:.3f})" for c in refused)
        raise RatchetError(
            f"seal refused: column {worst} predicts '{cols.label}' almost perfectly (threshold "
            f"{config.seal.leakage_threshold}). It is probably derived from the label: drop it from the data."
        )
    return report


def with_gap(config: RunConfig, gap_days: float) -> RunConfig:
    """`config` with split.gap_days set to the number used (an `auto` resolved), validated again."""
    data = config.model_dump(mode="json")
    data["split"]["gap_days"] = gap_days
    return parse_config(data, source="split.gap_days")


def gap_line(configured: float | str, used: float, span: float) -> str:
    """One line for the person: the gap used and where it came from."""
    if configured != "auto":
        why = "split.gap_days"
    elif used >= AUTO_GAP_MAX_DAYS:
        why = f"auto: {AUTO_GAP_SHARE * 100:g} % of the {span:.3g}-day span, capped at {AUTO_GAP_MAX_DAYS:g} day"
    else:
        why = f"auto: {AUTO_GAP_SHARE * 100:g} % of the {span:.3g}-day span"
    return f"split: gap {used:g} days between train, dev and holdout ({why})"


def init_workspace(domain_name: str, path: Path, *, config_file: Path | None = None,
                   overrides: Mapping[str, Any] | None = None, policy_file: Path | None = None,
                   variant: str | None = None, progress: Progress = lambda _: None) -> InitResult:
    target = Path(path).resolve()
    if target.exists() and any(target.iterdir()):
        raise RatchetError(f"{path}: already exists and is not empty. Choose a new --workspace folder.")
    if policy_file is not None and not Path(policy_file).is_file():
        raise RatchetError(f"{policy_file}: --policy file not found.")
    domain = get_domain(domain_name)
    overrides = dict(overrides or {})
    if variant is not None:  # a shipped policy variant: its file and the settings it needs
        from optimizer.llm.task_agent import MODULE, variant_overrides

        if policy_file is not None:
            raise RatchetError("--variant and --policy both name the starting policy; pass one of them.")
        name, settings = variant_overrides(domain, variant)
        policy_file = domain.package_dir / name
        overrides = {**settings, **overrides}
        imports = resolve_config(domain_name, config_file=config_file, overrides=overrides).static.allowed_imports
        overrides["static.allowed_imports"] = [*imports, MODULE]
    config = resolve_config(domain_name, config_file=config_file, overrides=overrides)
    cols = domain.columns

    frame = load_data(domain, config, progress)
    config = with_time_format(config, frame)  # the workspace records how its times were read
    progress("checking feature-label leakage")
    leakage = check_leakage(domain, frame, config)
    progress("splitting by time")
    splits = split_by_time(frame, time=cols.time, train=config.split.train, dev=config.split.dev,
                           gap_days=config.split.gap_days)
    gap = gap_line(config.split.gap_days, splits.gap_days, span_days(frame[cols.time]))
    # The workspace records the gap used, never `auto`: reseal, audit and the ledger see the same number.
    config = with_gap(config, splits.gap_days)
    content_cols = [c for c in frame.columns if c != cols.id]
    checks = check_contamination(splits, id_col=cols.id, time_col=cols.time, content_cols=content_cols,
                                 entity_col=cols.entity if cols.entity in frame.columns else None,
                                 max_overlap=config.seal.max_overlap_rows)
    from guards.drift import drift_report

    numeric = [c for c in cols.policy_columns(frame, with_label=False) if c not in (cols.id, cols.time)
               and pd.api.types.is_numeric_dtype(frame[c])]
    drift: dict[str, Any]  # a JSON report: its columns' entries are read below
    drift = {"reference": "train", "current": "holdout", "watch": config.seal.drift_watch,
             "alarm": config.seal.drift_alarm,
             "columns": drift_report(splits.train, splits.holdout, numeric, watch=config.seal.drift_watch,
                                     alarm=config.seal.drift_alarm)}

    # Everything is made in a staging folder beside the target and moved into place last: a stopped init leaves
    # no half workspace, only a staging folder the next init removes.
    _remove_stale_staging(target)
    staging = target.with_name(f".{target.name}.init-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        ws = Workspace(staging)
        progress("writing train and dev splits")
        ws.data_dir.mkdir()
        splits.train.to_parquet(ws.data_dir / "train.parquet", index=False)
        splits.dev.to_parquet(ws.data_dir / "dev.parquet", index=False)
        from holdout.evidence import CONTRACT

        (ws.root / CONTRACT).parent.mkdir()
        (ws.root / CONTRACT).write_text(json.dumps(domain.contract_suite(frame), indent=2, sort_keys=True,
                                                   default=str))
        ws.reports.mkdir()
        (ws.reports / "drift.json").write_text(json.dumps(drift, indent=2, default=str))
        (ws.reports / "leakage.json").write_text(json.dumps(leakage, indent=2, default=str))
        notes = tuple(frame.attrs.get("import_notes", ()))
        (ws.reports / "import.json").write_text(json.dumps({"notes": list(notes),
                                                            "dropped_columns": frame.attrs.get("dropped_columns", [])},
                                                           indent=2))

        progress("sealing the holdout")
        holdout, canaries = plant_canaries(splits.holdout, id_col=cols.id, time_col=cols.time,
                                           count=config.seal.canaries, seed=config.seed)
        digests = {"train": content_hash(splits.train), "dev": content_hash(splits.dev)}
        manifest, manifest_sha = seal_holdout(
            ws.holdout_dir, holdout, label=cols.label, time_col=cols.time, id_col=cols.id, canaries=canaries,
            scorer_files=scorer_files(domain), source_root=source_root(), tool_version=__version__,
            extra={"domain": domain.name, "seed": config.seed, "boundaries": splits.boundaries,
                   "splits_sha256": digests, "entity_overlap": checks.entity_overlap,
                   "contract_sha256": sha256_file(ws.root / CONTRACT)},
        )
        from holdout import fingerprint

        # Outside holdout/: a reseal refuses these rows again even once the folder is retired, deleted or replaced.
        sealed_rows = fingerprint.write(staging, holdout, id_col=cols.id, manifest_sha256=manifest_sha)
        ws.config.write_text(dump_config(config))
        shutil.copyfile(domain.program, ws.program)
        shutil.copyfile(policy_file or domain.baseline_policy, ws.policy)
        ws.init_repo()

        progress("recording the seal in MLflow and the ledger")
        from optimizer.tracking.runs import Tag, Tracker, store_fields

        experiment = experiment_name(target, manifest_sha)
        tracker = Tracker(experiment)
        with tracker.run("seal", tags={Tag.SEAL: manifest_sha, Tag.KIND: "seal",
                                       Tag.DOMAIN: domain.name}) as run:
            tracker.mlflow.log_params({"domain": domain.name, "seed": config.seed, "rows": len(frame),
                                       **{f"split.{k}": v for k, v in config.split.model_dump().items()}})
            tracker.mlflow.log_metrics({"rows_train": len(splits.train), "rows_dev": len(splits.dev),
                                        "rows_holdout": int(manifest["rows"]), "label_rate_holdout": manifest["label_rate"],
                                        **{f"psi_{c}": v["psi"] for c, v in drift["columns"].items()}})
            tracker.log_json(manifest, "MANIFEST.json")
            tracker.log_json(drift, "drift.json")
            for name, part in (("train", splits.train), ("dev", splits.dev)):
                tracker.log_dataset(part, name=name, digest=digests[name], context=name, source=f"data/{name}.parquet")
            tracker.log_dataset(holdout.drop(columns=[cols.label]).head(0), name="holdout",
                                digest=manifest["content_sha256"], context="holdout", source="holdout/holdout.parquet")
            run_id = run.info.run_id
        from holdout.entries import Seal
        from holdout.evidence import CONFIG, SPLITS, bind

        Ledger(ws.ledger).append(Kind.SEAL, Seal(
            evidence=bind(staging, (*SPLITS, CONFIG, CONTRACT)),
            manifest_sha256=manifest_sha,
            content_sha256=manifest["content_sha256"],
            fingerprint=sealed_rows,
            mlflow={**store_fields(tracker.uri, target), "experiment": experiment, "run_id": run_id},
            commit=ws.head(),  # the commit HEAD must be at until the baseline, a config change or a keep moves it
            drift={c: v["verdict"] for c, v in drift["columns"].items()},
        ).to_payload())
        ws.ledger.chmod(0o600)
        from optimizer.workspace.history import EventStore

        progress("writing the event history (train and dev events) that serve and shadow trials read")
        EventStore.create(staging, domain, splits.train, splits.dev)
        fault("init:before-move")
        staging.rename(target)  # atomic: the target is a whole workspace or untouched
        ws = Workspace(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    rows = {"train": len(splits.train), "dev": len(splits.dev), "holdout": int(manifest["rows"])}
    return InitResult(ws, manifest_sha, rows, run_id, drift, leakage, notes, gap)
