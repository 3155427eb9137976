"""The holdout manifest: what was sealed, and the hashes that prove it was not touched since."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from holdout.hashing import canonical_json, sha256_bytes, sign

MANIFEST = "MANIFEST.json"
SEAL_KEY_ENV = "RATCHET_SEAL_KEY"


def manifest_body(manifest: dict[str, Any]) -> str:
    """The signed and hashed part: everything except the signature itself."""
    return canonical_json({k: v for k, v in manifest.items() if k != "hmac"})


def manifest_sha256(manifest: dict[str, Any]) -> str:
    return sha256_bytes(manifest_body(manifest).encode())


def write_manifest(directory: Path, manifest: dict[str, Any]) -> str:
    """Write MANIFEST.json (signed when RATCHET_SEAL_KEY is set) read-only; return its sha256."""
    key = os.environ.get(SEAL_KEY_ENV)
    record = dict(manifest)
    if key:
        record["hmac"] = sign(manifest_body(record), key)
    path = Path(directory) / MANIFEST
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    path.chmod(0o444)
    return manifest_sha256(record)


def read_manifest(directory: Path) -> dict[str, Any]:
    from domains.errors import IntegrityError

    path = Path(directory) / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
        return manifest
    except FileNotFoundError:
        raise IntegrityError(f"{path}: manifest missing. The holdout is not sealed or was removed.") from None
    except json.JSONDecodeError as exc:
        raise IntegrityError(f"{path}: manifest is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
