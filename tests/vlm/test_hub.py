"""Models by hub name (vlm.hub, vlm.clip) from a cache in the hub's own layout, offline: tests/conftest.py points
HF_HOME at a fresh folder and sets HF_HUB_OFFLINE=1, tests/hub_cache.py writes the layout, and huggingface_hub's own
code reads it."""
import hashlib
import os
from pathlib import Path

import open_clip
import pytest
import torch
from huggingface_hub import constants, scan_cache_dir

from tests.hub_cache import add_commit, new_repo_id
from tests.tiny_clip import MODEL_CONFIGS, TINY, save_checkpoint, save_local_dir
from tests.tiny_teachers import write_tiny_gpt2_dir
from vlm.clip import ModelLoadError, load_clip, resolve_clip
from vlm.hub import ModelNotFoundError, resolve_file, resolve_pretrained_dir


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_the_cache_is_the_sessions_own_and_the_hub_scanner_reads_what_the_tests_write(tmp_path):
    assert constants.HF_HUB_CACHE == os.path.join(os.environ["HF_HOME"], "hub") and constants.HF_HUB_OFFLINE
    assert "ovd-distill-hf-home-" in constants.HF_HUB_CACHE
    repo = new_repo_id("layout")
    snapshot = add_commit(repo, save_local_dir(tmp_path / "clip"))
    (revision,) = next(info for info in scan_cache_dir().repos if info.repo_id == repo).revisions
    assert revision.commit_hash == snapshot.name and revision.refs == {"main"}
    files = {entry.file_name: entry for entry in revision.files}
    assert set(files) == {"open_clip_config.json", "open_clip_model.safetensors"}
    weights = files["open_clip_model.safetensors"]
    assert weights.blob_path.name == sha256(weights.file_path)  # an LFS file's blob is named by its sha256


def test_hf_hub_name_loads_from_the_cache_pinned_to_its_commit(tmp_path):
    folder = save_local_dir(tmp_path / "clip", seed=5)
    repo = new_repo_id("tiny-clip")
    snapshot = add_commit(repo, folder)
    source = resolve_clip(f"hf-hub:{repo}", None, None)
    assert (source.repo_id, source.revision) == (repo, snapshot.name)
    assert source.weights_path == str(snapshot / "open_clip_model.safetensors")
    assert source.configured == (f"hf-hub:{repo}", None)
    from_hub, from_folder = load_clip(source), load_clip(resolve_clip(f"local-dir:{folder}", None, None))
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(from_hub.model.encode_image(pixels), from_folder.model.encode_image(pixels))


def test_main_moves_to_a_new_commit_and_a_recorded_commit_stays_pinned(tmp_path):
    repo = new_repo_id("moving-clip")
    first = add_commit(repo, save_local_dir(tmp_path / "first", seed=1))
    second = add_commit(repo, save_local_dir(tmp_path / "second", seed=2))
    latest = resolve_clip(f"hf-hub:{repo}", None, None)
    pinned = resolve_clip(f"hf-hub:{repo}", None, None, revision=first.name)
    assert (latest.revision, pinned.revision) == (second.name, first.name)
    assert pinned.weights_path == str(first / "open_clip_model.safetensors")
    assert sha256(pinned.weights_path) != sha256(latest.weights_path)


def test_a_pretrained_tag_goes_through_open_clips_registry_to_its_hub_file(tmp_path, monkeypatch):
    """A tag of the tiny architecture in open_clip's pretrained registry, written as open_clip writes its own
    (`org/name/` = the repo's default open_clip_pytorch_model.bin, plus the tag's preprocessing). The repo holds
    only that .bin, so the safetensors twin open_clip would try first is missed and the .bin is read as data."""
    open_clip.add_model_config(MODEL_CONFIGS)
    repo = new_repo_id("tinytag")
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY, {"tinytag": {
        "hf_hub": f"{repo}/", "mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6), "interpolation": "bilinear",
        "resize_mode": "squash"}})
    checkpoint = save_checkpoint(tmp_path / "open_clip_pytorch_model.bin", seed=7)
    snapshot = add_commit(repo, {"open_clip_pytorch_model.bin": checkpoint})
    source = resolve_clip(TINY, "tinytag", None)
    assert source.weights_path == str(snapshot / "open_clip_pytorch_model.bin")
    assert source.configured == (TINY, "tinytag") and (source.repo_id, source.revision) == (repo, snapshot.name)
    loaded = load_clip(source)
    assert tuple(loaded.preprocess_cfg["mean"]) == (0.1, 0.2, 0.3) and tuple(loaded.preprocess_cfg["std"]) == (
        0.4, 0.5, 0.6)
    assert (loaded.preprocess_cfg["interpolation"], loaded.preprocess_cfg["resize_mode"]) == ("bilinear", "squash")
    saved = torch.load(checkpoint, weights_only=True)
    assert all(torch.equal(loaded.model.state_dict()[name], value) for name, value in saved.items())


def test_a_real_tag_names_its_hub_repo_and_the_cache_it_looked_in():
    with pytest.raises(ModelNotFoundError) as missing:
        resolve_clip("ViT-B-32-quickgelu", "openai", None)
    message = str(missing.value)
    assert message.startswith("model.checkpoint = 'openai'")
    assert "timm/vit_base_patch32_clip_224.openai" in message  # open_clip's registry entry for the tag
    assert constants.HF_HUB_CACHE in message and "HF_HUB_OFFLINE=1" in message
    # OpenAI's weights with an architecture without QuickGELU would embed quietly wrong: refused before any download.
    with pytest.raises(ModelLoadError, match="with QuickGELU, which model.clip = 'ViT-B-32' lacks; use "
                                             "'ViT-B-32-quickgelu'"):
        resolve_clip("ViT-B-32", "openai", None)


def test_every_missing_model_names_its_config_key_and_the_cache(tmp_path):
    absent = new_repo_id("absent")
    cases = [(lambda: resolve_clip(f"hf-hub:{absent}", None, None, key="text"), "text.clip = "),
             (lambda: resolve_pretrained_dir(absent, "captioner.blip2.model_dir"), "captioner.blip2.model_dir = "),
             (lambda: resolve_file(f"hf-hub:{absent}/w.pt", "captioner.clipcap.checkpoint"),
              "captioner.clipcap.checkpoint = ")]
    for resolve, key in cases:
        with pytest.raises(ModelNotFoundError) as missing:
            resolve()
        assert str(missing.value).startswith(key) and constants.HF_HUB_CACHE in str(missing.value)
        assert isinstance(missing.value, FileNotFoundError)  # callers that catch a missing file catch it too
    with pytest.raises(ModelNotFoundError, match="no local path of that name, and cannot get"):
        resolve_pretrained_dir(absent, "captioner.clipcap.gpt_dir")  # a bare id could have been a local folder
    with pytest.raises(ModelNotFoundError, match="not a Hugging Face repo id"):
        resolve_pretrained_dir(str(tmp_path / "no" / "such" / "folder"), "opendet.name_generator.t5_dir")
    with pytest.raises(ModelLoadError, match="names a repository, not a file"):
        resolve_file(f"hf-hub:{absent}", "captioner.clipcap.checkpoint")
    with pytest.raises(ModelLoadError, match="leave model.checkpoint empty"):
        resolve_clip(f"hf-hub:{absent}", "openai", None)
    with pytest.raises(ModelLoadError, match="hf-hub:org/name"):
        resolve_clip("https://example.org/clip.pt", None, None)
    with pytest.raises(ModelNotFoundError, match="neither a file nor a pretrained tag of ViT-B-32 .*openai"):
        resolve_clip("ViT-B-32", str(tmp_path / "none.pt"), None)


def test_transformers_repo_ids_resolve_to_snapshots_and_a_local_folder_wins(tmp_path, monkeypatch):
    gpt = write_tiny_gpt2_dir(tmp_path / "gpt2")  # config + tokenizer, no weights: ClipCap's gpt_dir
    repo = new_repo_id("tiny-gpt2")
    snapshot = add_commit(repo, gpt)
    for reference in (repo, f"hf-hub:{repo}"):
        files = resolve_pretrained_dir(reference, "captioner.clipcap.gpt_dir", weights=False)
        assert (files.path, files.repo_id, files.revision) == (str(snapshot), repo, snapshot.name)
    with pytest.raises(ModelNotFoundError, match="holds no weights"):
        resolve_pretrained_dir(repo, "captioner.blip2.model_dir")
    (tmp_path / "model.safetensors").write_bytes(b"not read here")
    with_weights = add_commit(repo, {**{p.name: p for p in gpt.iterdir()}, "model.safetensors": tmp_path /
                                     "model.safetensors"})
    assert resolve_pretrained_dir(repo, "captioner.blip2.model_dir").path == str(with_weights)
    monkeypatch.chdir(tmp_path)  # a folder named like the repo id is read as that folder, as from_pretrained does
    local = Path(repo)
    local.mkdir(parents=True)
    (local / "config.json").write_text("{}")
    assert resolve_pretrained_dir(repo, "captioner.blip2.model_dir").repo_id is None
    assert resolve_pretrained_dir(f"hf-hub:{repo}", "captioner.blip2.model_dir").repo_id == repo


UNREACHABLE_CHILD = """
import sys, time
from tests.hub_cache import add_commit
from vlm.hub import ModelNotFoundError, resolve_file
started = time.perf_counter()
try:
    resolve_file("hf-hub:tests-org/absent/w.pt", "captioner.clipcap.checkpoint")
except ModelNotFoundError as error:
    print("ERROR", error)
print("SECONDS", time.perf_counter() - started)
snapshot = add_commit("tests-org/cached", {"w.pt": sys.argv[1]})
print("CACHED", resolve_file("hf-hub:tests-org/cached/w.pt", "captioner.clipcap.checkpoint").path)
"""


@pytest.mark.slow  # a second Python process
def test_an_unreachable_hub_costs_seconds_and_the_cache_still_serves(tmp_path):
    """Without HF_HUB_OFFLINE=1 and no Hub (a closed port here), huggingface_hub would retry each file five
    times with back-off (about 25 s) before the error; one probe of the Hub decides instead."""
    import socket
    import subprocess
    import sys

    with socket.socket() as closed:  # a port nothing listens on: every connection is refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_ENDPOINT": f"http://127.0.0.1:{port}",
           "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}
    done = subprocess.run([sys.executable, "-c", UNREACHABLE_CHILD, str(weights)], capture_output=True, text=True,
                          env=env, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    error = done.stdout.split("ERROR ", 1)[1].split("\n", 1)[0]
    assert error.startswith("captioner.clipcap.checkpoint = ") and "the Hub could not be reached" in error
    assert f"127.0.0.1:{port}" in error and "cannot be reached" in done.stderr
    assert float(done.stdout.split("SECONDS ", 1)[1].split()[0]) < 10
    assert Path(done.stdout.split("CACHED ", 1)[1].strip()).read_bytes() == b"weights"
