"""A Hugging Face cache in the hub's own layout, filled from local files, for tests (the Hub is unreachable here).

The layout huggingface_hub writes and reads (docstring of huggingface_hub.hf_hub_download; "Understand caching" in
its documentation):
    <cache>/models--<org>--<name>/blobs/<etag>               the bytes, named by their etag: the sha256 of an LFS
                                                              file (weights), the git blob sha1 of any other file
                                  /snapshots/<commit>/<path>  relative symlinks to the blobs, one folder per commit
                                  /refs/main                  the commit the branch `main` points at
Everything that reads such a cache in the tests is huggingface_hub's own code; tests/conftest.py points HF_HOME at
a fresh folder for the session, so this cache is the only one the suite sees.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from huggingface_hub import constants

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".model")  # stored with Git LFS on the Hub


def _etag(name: str, data: bytes) -> str:
    if name.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id


def new_repo_id(name: str) -> str:
    """A repo id no other test uses: the cache is shared by the whole session."""
    return f"tests-org/{name}-{uuid.uuid4().hex[:8]}"


def files_of(folder: Path) -> dict[str, Path]:
    """Path in the repo → local file, for every file under `folder`."""
    return {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()}


def add_commit(repo_id: str, files: dict[str, Path] | Path, cache: str | Path | None = None) -> Path:
    """One commit of `repo_id` holding `files` (path in the repo → local file, or every file under a folder), made
    the head of `main`. Returns its snapshot folder. The commit id is derived from the contents, like git's."""
    cache = Path(cache or constants.HF_HUB_CACHE)
    files = files_of(files) if isinstance(files, Path) else files
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    contents = {name: Path(path).read_bytes() for name, path in files.items()}
    etags = {name: _etag(name, data) for name, data in contents.items()}
    commit = hashlib.sha1(repr((repo_id, sorted(etags.items()))).encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for name, data in contents.items():
        blob = repo / "blobs" / etags[name]
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)  # no newline, as huggingface_hub writes it
    return snapshot
