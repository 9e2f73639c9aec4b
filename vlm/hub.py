"""Model references → local files, through the standard Hugging Face cache.

A config names a model the way people name it: a local folder or file, or a Hugging Face Hub name — open_clip's
`hf-hub:org/name` (and, for one file of a repo, `hf-hub:org/name/path/in/repo`) or a transformers repo id
(`openai-community/gpt2`, `google/flan-t5-base`). Hub names go through huggingface_hub's `hf_hub_download` and
`snapshot_download`, which keep files in the standard cache ($HF_HUB_CACHE, else $HF_HOME/hub), download them when
online and only read the cache when HF_HUB_OFFLINE=1. When neither works, the error names the config key, the
reference and the cache folder it looked in; callers resolve every model before any work starts.

What comes back is a local path (for a hub name, inside a snapshot of the cache:
`models--org--name/snapshots/<commit>/…`) and where it came from (repo id, commit). Loaders only ever see local
paths, so the files hashed for the store's manifest are the files loaded, at the commit recorded.
"""
from __future__ import annotations

import functools
import logging
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (EntryNotFoundError, HFValidationError, HfHubHTTPError, IncompleteSnapshotError,
                                    LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError,
                                    RevisionNotFoundError)
from huggingface_hub.utils import validate_repo_id

HUB_PREFIX = "hf-hub:"  # open_clip's spelling of a Hub name (open_clip.factory.HF_HUB_PREFIX)

# The files of a transformers `save_pretrained` folder (names from transformers.utils: CONFIG_NAME,
# SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME). Repos also hold TensorFlow, Flax, ONNX and OpenVINO
# copies of the same weights; only what transformers loads here is fetched.
CONFIG_AND_TOKENIZER = ("*.json",  # config, generation / processor / tokenizer configs, sentence-transformers modules
                        "*.txt", "*.model",  # vocab and merges lists, SentencePiece models (T5's spiece.model)
                        "*.jinja")  # chat templates (transformers.utils.CHAT_TEMPLATE_FILE, chat_template.jinja)
SAFETENSORS_WEIGHTS = ("model.safetensors", "model-*-of-*.safetensors")
TORCH_WEIGHTS = ("pytorch_model.bin", "pytorch_model-*-of-*.bin")  # read by transformers with weights_only=True

_HUB_ERRORS = (HfHubHTTPError, EntryNotFoundError, OfflineModeIsEnabled, HFValidationError)
LOG = logging.getLogger(__name__)
# How long the Hub gets to accept a connection before this process reads the cache alone. huggingface_hub itself
# retries an unreachable Hub five times with back-off (about 25 s per file, and per file again), so a machine
# without internet and without HF_HUB_OFFLINE=1 waited that long before the error.
HUB_PROBE_SECONDS = 3.0


class ModelLoadError(ValueError):
    """A model that cannot be loaded; the message names the config key."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """A model neither on local disk nor obtainable through the Hugging Face cache."""


@dataclass(frozen=True)
class ModelFiles:
    """A resolved model reference: the local file or folder to load and, for a hub name, where it came from."""

    path: str
    repo_id: str | None = None
    revision: str | None = None  # the commit of the cached snapshot holding `path`


def hub_cache() -> str:
    """The folder huggingface_hub reads and fills: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    return constants.HF_HUB_CACHE


def repo_id_of(reference: str, key: str) -> str:
    """`org/name` of `hf-hub:org/name` or of a bare repo id; an error naming `key` for anything else."""
    name = reference[len(HUB_PREFIX):] if reference.startswith(HUB_PREFIX) else reference
    try:
        validate_repo_id(name)
    except HFValidationError as error:
        local = "" if reference.startswith(HUB_PREFIX) else "no local path of that name, and "
        raise ModelNotFoundError(f"{key} = {reference!r}: {local}not a Hugging Face repo id (`org/name`)") from error
    return name


@functools.lru_cache(maxsize=None)
def hub_unreachable() -> str | None:
    """Why the Hub (HF_ENDPOINT) cannot be reached from here, or None when it can or when HF_HUB_OFFLINE=1 (nothing
    is tried then). One TCP connection, given HUB_PROBE_SECONDS (name lookup included), once per process."""
    if constants.is_offline_mode():
        return None
    endpoint = urllib.parse.urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname or "", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"{host}:{port}: {error}")

    probe = threading.Thread(target=connect, daemon=True)  # a name lookup ignores the socket's timeout
    probe.start()
    probe.join(HUB_PROBE_SECONDS)
    why = outcome[0] if outcome else f"{host}:{port}: no answer within {HUB_PROBE_SECONDS:g} s"
    if why:
        LOG.warning("the Hugging Face Hub cannot be reached (%s): models named by hub name come from the cache "
                    "alone (set HF_HUB_OFFLINE=1 to skip this check)", why)
    return why


def _not_obtainable(key: str, reference: str, what: str, repo_id: str, error: Exception) -> ModelNotFoundError:
    if isinstance(error, RepositoryNotFoundError):  # GatedRepoError included
        why = "the Hub has no such repository, or it is private or gated (log in with `hf auth login`)"
    elif isinstance(error, RevisionNotFoundError):
        why = "the repository has no such revision"
    elif isinstance(error, IncompleteSnapshotError):  # the hub's own listing of the commit says files are missing
        why = f"the cache holds only part of it: {error}"
    elif isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        why = ("it is not in the cache, and HF_HUB_OFFLINE=1 forbids downloading it" if constants.is_offline_mode()
               else f"it is not in the cache, and the Hub could not be reached ({hub_unreachable() or 'no answer'})")
    elif isinstance(error, EntryNotFoundError):
        why = "the repository has no such file"
    else:
        why = f"{type(error).__name__}: {error}"
    # A bare repo id could also have been meant as a local folder (from_pretrained reads either).
    local = "no local path of that name, and " if reference == repo_id else ""
    return ModelNotFoundError(
        f"{key} = {reference!r}: {local}cannot get {what} ({why}). Looked in the Hugging Face cache {hub_cache()} "
        f"(HF_HOME / HF_HUB_CACHE); fill it where the Hub is reachable (`hf download {repo_id}`) and copy it here, "
        f"or give a local path")


def _snapshot_commit(path: str, filename: str) -> str:
    """The commit of `<cache>/models--org--name/snapshots/<commit>/<filename>` (the hub's cache layout)."""
    snapshot = Path(path)
    for _ in Path(filename).parts:
        snapshot = snapshot.parent
    return snapshot.name


def download_file(repo_id: str, filename: str, *, key: str, reference: str, revision: str | None = None) -> ModelFiles:
    """One file of a Hub repo, from the cache or downloaded into it; `revision` None = the branch `main`."""
    try:
        path = hf_hub_download(repo_id, filename, revision=revision, local_files_only=hub_unreachable() is not None)
    except _HUB_ERRORS as error:
        raise _not_obtainable(key, reference, f"{filename} of {repo_id}", repo_id, error) from error
    return ModelFiles(path, repo_id, _snapshot_commit(path, filename))


def download_first(repo_id: str, filenames: Sequence[str], *, key: str, reference: str,
                   revision: str | None = None) -> ModelFiles:
    """The first of `filenames` the repo (or, offline, the cache) has: e.g. safetensors before a pickle-based .bin."""
    for filename in filenames[:-1]:
        try:
            return download_file(repo_id, filename, key=key, reference=reference, revision=revision)
        except ModelNotFoundError as error:
            if not isinstance(error.__cause__, EntryNotFoundError):  # a missing repo is missing for every name
                raise
    return download_file(repo_id, filenames[-1], key=key, reference=reference, revision=revision)


def download_snapshot(repo_id: str, patterns: Sequence[str], *, key: str, reference: str,
                      revision: str | None = None) -> ModelFiles:
    """The files of a Hub repo matching `patterns`, as one snapshot folder of the cache.

    Offline, huggingface_hub returns the cached snapshot folder without knowing whether it holds every file the
    patterns would match; callers check for the files they need."""
    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=list(patterns),
                                   local_files_only=hub_unreachable() is not None)
    except _HUB_ERRORS as error:
        raise _not_obtainable(key, reference, repo_id, repo_id, error) from error
    return ModelFiles(folder, repo_id, Path(folder).name)


def _holds_any(folder: str, patterns: Sequence[str]) -> bool:
    return any(any(Path(folder).glob(pattern)) for pattern in patterns)


def resolve_pretrained_dir(reference: str, key: str, *, weights: bool = True, revision: str | None = None
                           ) -> ModelFiles:
    """A transformers model folder: a local `save_pretrained` folder, or a Hub repo (`org/name`, `name`,
    `hf-hub:org/name`) whose configs and tokenizer files — and with `weights` its safetensors, else its
    pytorch_model*.bin — are fetched into the cache. A local folder of that name wins, as in from_pretrained."""
    if not reference:
        raise ModelNotFoundError(f"no model given (config key {key})")
    if not reference.startswith(HUB_PREFIX) and Path(reference).is_dir():
        if not (Path(reference) / "config.json").is_file():
            raise ModelNotFoundError(f"{reference} has no config.json, so it is not a transformers model folder "
                                     f"(config key {key})")
        return ModelFiles(reference)
    repo_id = repo_id_of(reference, key)
    files = download_snapshot(repo_id, CONFIG_AND_TOKENIZER + (SAFETENSORS_WEIGHTS if weights else ()), key=key,
                              reference=reference, revision=revision)
    if weights and not _holds_any(files.path, SAFETENSORS_WEIGHTS):
        # A repo without safetensors (older uploads): its PyTorch weights, pinned to the same commit.
        files = download_snapshot(repo_id, CONFIG_AND_TOKENIZER + TORCH_WEIGHTS, key=key, reference=reference,
                                  revision=files.revision)
    if not (Path(files.path) / "config.json").is_file():
        raise ModelNotFoundError(f"{key} = {reference!r}: the cached snapshot {files.path} has no config.json, so "
                                 f"{repo_id} is not a transformers model, or the cache holds only part of it")
    if weights and not _holds_any(files.path, SAFETENSORS_WEIGHTS + TORCH_WEIGHTS):
        raise ModelNotFoundError(f"{key} = {reference!r}: the cached snapshot {files.path} holds no weights "
                                 f"({', '.join(SAFETENSORS_WEIGHTS + TORCH_WEIGHTS)}); the cache holds only part of "
                                 f"{repo_id}, or the repo has no PyTorch weights")
    return files


def resolve_file(reference: str, key: str, revision: str | None = None) -> ModelFiles:
    """A weights file: a local path, or `hf-hub:org/name/path/in/repo` fetched into the cache."""
    if not reference:
        raise ModelNotFoundError(f"no file given (config key {key})")
    if not reference.startswith(HUB_PREFIX):
        if not Path(reference).is_file():
            raise ModelNotFoundError(f"file not found: {reference} (config key {key}); a file of a Hub repo is "
                                     f"written {HUB_PREFIX}org/name/path/in/repo")
        return ModelFiles(reference)
    parts = reference[len(HUB_PREFIX):].split("/", 2)
    if len(parts) < 3 or not parts[2]:
        raise ModelLoadError(f"{key} = {reference!r} names a repository, not a file: write "
                             f"{HUB_PREFIX}org/name/<path of the file in the repo>")
    repo_id = repo_id_of(HUB_PREFIX + "/".join(parts[:2]), key)
    return download_file(repo_id, parts[2], key=key, reference=reference, revision=revision)
