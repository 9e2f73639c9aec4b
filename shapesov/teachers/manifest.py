"""MANIFEST.json of a teachers directory: every file with its sha256, the config, its hash and the seed.

A teacher is reused (never retrained) when its files verify against the manifest and the manifest's config hash is
the current config's; the committed copy under assets/teachers/ is checked the same way before it is copied.

The manifest is also the training record that travels with the ClipCap teacher's weights: its `clipcap` entry names
the checkpoint, its sha256 and `normalize_prefix` (whether it was trained on unit-length CLIP embeddings), which the
pseudo-labels stage reads beside the checkpoint (vlm.clipcap.recorded_normalize_prefix) instead of a config pin.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from vlm.file_hash import sha256_file

MANIFEST_FILE = "MANIFEST.json"
MANIFEST_FORMAT = 1


def file_hashes(root: Path, files: list[Path]) -> dict[str, str]:
    """{path relative to root (posix): sha256} for `files`."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(files)}


def read_manifest(root: Path) -> dict | None:
    path = root / MANIFEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_manifest(root: Path, manifest: dict) -> Path:
    path = root / MANIFEST_FILE
    path.write_text(json.dumps({"format": MANIFEST_FORMAT, **manifest}, indent=2, sort_keys=True) + "\n")
    return path


def verify_teacher(root: Path, manifest: dict | None, teacher: str, config_sha256: str) -> list[str]:
    """Problems that stop `teacher` under `root` from being reused; empty when every file matches."""
    if manifest is None:
        return [f"{root / MANIFEST_FILE} does not exist"]
    if manifest.get("config_sha256") != config_sha256:
        return [f"{root / MANIFEST_FILE} was made with another teachers config"]
    entry = manifest.get("teachers", {}).get(teacher)
    if not entry:
        return [f"{root / MANIFEST_FILE} has no {teacher!r} teacher"]
    problems = []
    for rel, expected in entry["files"].items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif sha256_file(path) != expected:
            problems.append(f"{path} does not match its sha256 in the manifest")
    return problems


def copy_teacher(source: Path, target: Path, entry: dict) -> None:
    """Copy one verified teacher's files from `source` to `target`, keeping relative paths."""
    for rel in entry["files"]:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target / rel)
