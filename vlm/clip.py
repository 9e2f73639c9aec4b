"""open_clip models by the names people use, resolved to local files before anything is loaded.

A model (`<key>.clip`, with `<key>.checkpoint`) is named
- `local-dir:<dir>`: open_clip's folder format, `open_clip_config.json` plus a weights file;
- `hf-hub:org/name`: the same folder format on the Hugging Face Hub, fetched into the HF cache (vlm.hub) and
  loaded as `local-dir:` from its snapshot folder;
- an architecture name plus a checkpoint that is a weights file or one of open_clip's pretrained tags
  (`ViT-B-32-quickgelu`, `openai`): open_clip's pretrained registry names the hub repo and file of a tag, which
  are fetched into the HF cache and loaded as a checkpoint with the tag's preprocessing.
Architecture JSONs can be registered from a directory first (configs as data, open_clip's registry). A model that
cannot be found is an error naming the config key (and the cache folder, for hub names).
"""
from __future__ import annotations

import json
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from vlm.hub import (HUB_PREFIX, ModelLoadError, ModelNotFoundError, download_file, download_first, download_snapshot,
                     repo_id_of)
from vlm.dtype_probe import AUTO, DtypeChoice, probe_dtype
from vlm.no_random_init import random_init_skipped
from vlm.tensor_files import refused_global

LOCAL_DIR = "local-dir:"
# Other spellings of remote weights: refused with the spelling we accept, rather than misread as a name.
OTHER_REMOTE_PREFIXES = ("hf:", "http://", "https://")
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_pytorch_model.bin"  # open_clip.constants.HF_WEIGHTS_NAME: a repo's default weights
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "*.model", "vocab*",
                      "merges.txt")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSource:
    """Where a CLIP model comes from, resolved and checked: what `load_clip` needs on any worker."""

    open_clip_name: str  # passed to open_clip.create_model_and_transforms (a hub repo: its snapshot as local-dir:)
    checkpoint: str | None  # weights file for an architecture name; None for local-dir (found in the folder)
    model_config_dir: str | None  # extra architecture JSONs to register before creating the model
    weights_path: str  # the file whose bytes are the weights (hash it for provenance)
    name: str | None = None  # the model as configured when open_clip gets another name (`hf-hub:org/name`)
    tag: str | None = None  # the open_clip pretrained tag `checkpoint` was resolved from (its preprocessing applies)
    repo_id: str | None = None  # hub repo of the weights
    revision: str | None = None  # commit of the cached snapshot holding them

    @property
    def configured(self) -> tuple[str, str | None]:
        """(model, checkpoint) as the config wrote them: with `revision`, what finds these weights again."""
        return self.name or self.open_clip_name, self.tag or self.checkpoint


@dataclass
class LoadedClip:
    model: torch.nn.Module
    tokenizer: object
    preprocess_cfg: dict  # open_clip's: size, mean, std, interpolation, resize_mode, fill_color
    embed_dim: int
    dtype: torch.dtype
    device: torch.device
    dtype_choice: DtypeChoice | None = None  # how `dtype` was picked (model.dtype auto: the probe's figures)


def register_model_configs(directory: str | None, key: str) -> None:
    """Add the architecture JSONs of `directory` to open_clip's registry (name = file stem)."""
    if not directory:
        return
    import open_clip

    if not Path(directory).is_dir():
        raise ModelLoadError(f"model config directory not found: {directory} (config key {key})")
    open_clip.add_model_config(directory)


def _local_dir_weights(directory: str, key: str) -> str:
    import open_clip.factory

    folder = Path(directory)
    if not (folder / OPEN_CLIP_CONFIG).is_file():
        raise ModelLoadError(f"{directory} has no open_clip_config.json, so it is not an open_clip model folder "
                             f"(config key {key})")
    # The same rule open_clip applies when it loads the folder, so the hash is of the file it will load.
    weights = open_clip.factory._find_checkpoint_in_dir(folder)
    if weights is None:
        raise ModelLoadError(f"no weights file (*.safetensors, *.bin, *.pth) in {directory} (config key {key}); "
                             f"refusing to run with random weights")
    return str(weights)


def resolve_clip(model: str, checkpoint: str | None, model_config_dir: str | None, key: str = "model",
                 revision: str | None = None) -> ClipSource:
    """Find the weights of the CLIP a config names (module docstring), fetching hub names into the HF cache when
    online; nothing is loaded. `revision` pins the commit of a hub repo (the one a store's manifest recorded).
    Errors name `<key>.clip`, `<key>.checkpoint` or `<key>.model_config_dir`."""
    import open_clip

    if not model:
        raise ModelLoadError(f"no CLIP model given (config key {key}.clip)")
    if model.startswith(HUB_PREFIX):
        if checkpoint:
            raise ModelLoadError(f"{key}.clip = {model!r} is a hub repo, which holds its own weights; leave "
                                 f"{key}.checkpoint empty (it is {checkpoint!r})")
        return _hub_repo_clip(model, model_config_dir, key, revision)
    if model.startswith(OTHER_REMOTE_PREFIXES):
        raise ModelLoadError(f"{key}.clip = {model!r}: a Hugging Face repo is written {HUB_PREFIX}org/name; "
                             f"other URLs are not fetched")
    if model.startswith(LOCAL_DIR):
        if checkpoint:
            raise ModelLoadError(f"{key}.clip = {model!r} is an open_clip folder, which holds its own weights; leave "
                                 f"{key}.checkpoint empty (it is {checkpoint!r}: --set {key}.checkpoint=null)")
        directory = model[len(LOCAL_DIR):]
        if not Path(directory).is_dir():
            raise ModelNotFoundError(f"model folder not found: {directory} (config key {key}.clip)")
        weights = _local_dir_weights(directory, f"{key}.clip")
        return ClipSource(model, None, model_config_dir, weights)
    register_model_configs(model_config_dir, f"{key}.model_config_dir")
    architecture = model.replace("/", "-")  # open_clip's own spelling rule: ViT-B/32 is ViT-B-32
    if architecture not in open_clip.list_models():
        hint = f"; a Hub repo is written {HUB_PREFIX}{model}" if "/" in model else ""
        raise ModelLoadError(f"{key}.clip = {model!r} is neither `local-dir:<folder>` nor a registered "
                             f"architecture; add its JSON under {key}.model_config_dir{hint}")
    if not checkpoint:
        raise ModelLoadError(f"{key}.clip = {model!r} needs a weights file or a pretrained tag in {key}.checkpoint")
    # A tag first, then a file: the order of open_clip's create_model.
    tag = open_clip.get_pretrained_cfg(architecture, checkpoint)
    if tag:
        return _pretrained_tag_clip(model, checkpoint, tag, model_config_dir, key, revision)
    if not os.path.isfile(checkpoint):
        tags = open_clip.list_pretrained_tags_by_model(architecture)
        known = f" (its tags: {', '.join(tags)})" if tags else ""
        raise ModelNotFoundError(f"checkpoint not found: {checkpoint}, neither a file nor a pretrained tag of "
                                 f"{architecture}{known} (config key {key}.checkpoint)")
    return ClipSource(model, checkpoint, model_config_dir, checkpoint)


def _weights_candidates(filename: str) -> list[str]:
    """The weights files to try for a hub repo's `filename`: its safetensors twins first (open_clip's
    `open_clip_model.safetensors` for `open_clip_pytorch_model.bin`), the rule open_clip's own downloads follow."""
    import open_clip.pretrained

    return [*open_clip.pretrained._get_safe_alternatives(filename), filename]


def _hub_repo_clip(reference: str, model_config_dir: str | None, key: str, revision: str | None) -> ClipSource:
    """`hf-hub:org/name`: the config and the weights go to the cache, pinned to one commit, and open_clip loads
    that snapshot folder as `local-dir:`, so the weights hashed are the weights loaded."""
    repo_id = repo_id_of(reference, f"{key}.clip")
    where = {"key": f"{key}.clip", "reference": reference}
    config = download_file(repo_id, OPEN_CLIP_CONFIG, revision=revision, **where)
    download_first(repo_id, _weights_candidates(OPEN_CLIP_WEIGHTS), revision=config.revision, **where)
    folder = Path(config.path).parent
    text_cfg = json.loads(Path(config.path).read_text()).get("model_cfg", {}).get("text_cfg", {})
    if text_cfg.get("hf_tokenizer_name"):
        # open_clip reads the Hugging Face tokenizer of a `local-dir:` model from that folder.
        download_snapshot(repo_id, HF_TOKENIZER_FILES, revision=config.revision, **where)
        if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
            raise ModelLoadError(f"{key}.clip = {reference!r}: its text tower uses the tokenizer "
                                 f"{text_cfg['hf_tokenizer_name']!r}, which {repo_id} does not hold; put the model "
                                 f"and that tokenizer in one folder and give it as local-dir:<folder>")
    return ClipSource(f"{LOCAL_DIR}{folder}", None, model_config_dir, _local_dir_weights(str(folder), f"{key}.clip"),
                      name=reference, repo_id=repo_id, revision=config.revision)


def _pretrained_tag_clip(model: str, tag: str, tag_cfg: dict, model_config_dir: str | None, key: str,
                         revision: str | None) -> ClipSource:
    """An architecture and one of open_clip's pretrained tags. The registry's `hf_hub` is `org/name/file`, or
    `org/name/` for the repo's default file (open_clip.pretrained.download_pretrained); every tag of open_clip 3.3
    has one. The file goes to the cache and open_clip gets it as a checkpoint."""
    import open_clip

    architecture = model.replace("/", "-")
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    if quick_gelu != bool(open_clip.get_model_config(architecture).get("quick_gelu", False)):
        # open_clip only warns here; the features would come out quietly wrong (OpenAI's CLIPs use QuickGELU).
        other = f"{architecture}-quickgelu" if quick_gelu else architecture.removesuffix("-quickgelu")
        raise ModelLoadError(f"{key}.checkpoint = {tag!r} was trained {'with' if quick_gelu else 'without'} "
                             f"QuickGELU, which {key}.clip = {model!r} {'lacks' if quick_gelu else 'has'}; "
                             f"use {other!r} (open_clip's list_pretrained() pairs each tag with its architecture)")
    repo_id, filename = os.path.split(tag_cfg.get("hf_hub", ""))
    if not repo_id:
        raise ModelLoadError(f"{key}.checkpoint = {tag!r}: open_clip names no Hugging Face repo for this tag of "
                             f"{model} (only {tag_cfg.get('url') or 'nothing'}); download it and give the file")
    files = download_first(repo_id, _weights_candidates(filename or OPEN_CLIP_WEIGHTS), key=f"{key}.checkpoint",
                           reference=tag, revision=revision)
    return ClipSource(model, files.path, model_config_dir, files.path, tag=tag, repo_id=repo_id,
                      revision=files.revision)


def _tag_preprocess(source: ClipSource) -> dict:
    """The image preprocessing of a pretrained tag: open_clip applies it when it downloads the tag itself, not to
    a checkpoint file, so it is passed along with the file."""
    import open_clip

    if not source.tag:
        return {}
    cfg = open_clip.get_pretrained_cfg(source.open_clip_name.replace("/", "-"), source.tag)
    return {"image_mean": cfg.get("mean"), "image_std": cfg.get("std"), "image_interpolation": cfg.get("interpolation"),
            "image_resize_mode": cfg.get("resize_mode")}


def resolve_device(device: str) -> torch.device:
    """`auto` → cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' requested but no GPU is visible (config key runtime.device)")
    return torch.device(device)


def device_dtype(dtype: str, device: torch.device, key: str) -> str:
    """The dtype a model runs in on `device`: `dtype`, except fp16 on a CPU, which becomes fp32 with a warning
    naming `key`. CPUs have no fast fp16 matrix kernels (PyTorch converts to float32 and back around every
    operation, several times slower than fp32 itself), and a preset written for GPUs asks for fp16; bf16 stays
    (recent CPUs run it natively)."""
    if dtype == "fp16" and device.type == "cpu":
        LOG.warning("%s=fp16 on a CPU runs several times slower than fp32 (no fp16 kernels); using fp32 here "
                    "(set %s=fp32, or bf16 on a CPU with bfloat16 support, to silence this)", key, key)
        return "fp32"
    return dtype


def load_clip(source: ClipSource, device: str = "cpu", dtype: str = "fp32", dtype_key: str = "model.dtype"
              ) -> LoadedClip:
    """Build the model and load its weights (`torch.load(weights_only=True)` or safetensors), in eval mode, in
    `dtype` (device_dtype: fp16 on a CPU runs in fp32; `dtype_key` is the config key named when it does; `auto`:
    bf16 on a GPU, on a CPU the faster of fp32 and bf16 as a timed probe finds, vlm.dtype_probe)."""
    import open_clip

    register_model_configs(source.model_config_dir, "model.model_config_dir")
    target = resolve_device(device)
    dtype = device_dtype(dtype, target, dtype_key)
    try:
        # Built without its random draw (vlm.no_random_init), then loaded strictly from the file resolve_clip hashed:
        # every weight comes from that file, or the load fails. No tower's own base weights are fetched either.
        with random_init_skipped():
            model, _, _ = open_clip.create_model_and_transforms(
                source.open_clip_name, pretrained=source.checkpoint, load_weights=False, pretrained_image=False,
                pretrained_text=False, device=target, weights_only=True, **_tag_preprocess(source))
        try:
            open_clip.load_checkpoint(model, source.weights_path, strict=True, weights_only=True)
        except RuntimeError as error:  # load_state_dict's missing, unexpected or mis-shaped keys
            raise ModelLoadError(f"{source.weights_path} (config key model.clip or model.checkpoint) does not hold "
                                 f"the weights of {source.open_clip_name}: {error}") from None
    except pickle.UnpicklingError as error:
        named = refused_global(error)
        raise ModelLoadError(f"{source.weights_path} (config key model.clip or model.checkpoint) holds code (it asks "
                             f"to build {named or 'objects torch does not load as data'}) and was refused unread; "
                             "save a plain state dict or safetensors") from None
    preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(model))
    choice = DtypeChoice(dtype, "given")
    if dtype == AUTO:
        # On a GPU bf16; on a CPU the faster of fp32 and bf16 on this machine, timed here (vlm.dtype_probe).
        model = model.float().eval().requires_grad_(False)
        if target.type == "cpu":
            model, choice = probe_dtype(model, _input_size(preprocess_cfg))
        else:
            choice = DtypeChoice("bf16", "auto on a GPU")
        dtype = choice.dtype
    model = model.to(dtype=DTYPES[dtype]).eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(source.open_clip_name)
    with torch.inference_mode():
        embed_dim = int(model.encode_text(tokenizer(["a"]).to(target)).shape[-1])
    return LoadedClip(model, tokenizer, preprocess_cfg, embed_dim, DTYPES[dtype], target, choice)


def _input_size(preprocess_cfg: dict) -> tuple[int, int]:
    size = preprocess_cfg.get("size", 224)
    return (size, size) if isinstance(size, int) else tuple(size)
