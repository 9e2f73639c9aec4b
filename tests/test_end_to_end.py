"""The chain across its seams: both Beam jobs write a store from a few images, then each training method trains two
steps on that very store and evaluates with pycocotools. Any break between the jobs and the trainer fails here."""
import json

import pytest

from beam_jobs import extract_features, pseudo_labels
from featurestore.reader import StoreReader
from tests.beam_jobs.sample import make_sample
from tests.beam_jobs.two_jobs import JobWorld, write_captions
from tests.tiny_clip import save_local_dir
from tests.trainers.opendet.tiny_opendet import TINY_T5_DIR
from trainers.train import main as train_main

TINY_METHOD_SETTINGS = {
    "hdovd": ["hdovd.detector.min_size=64", "hdovd.detector.max_size=64"],
    "opendet": ["opendet.detector.image_size=64", "opendet.detector.hidden_dim=32", "opendet.detector.ffn_dim=64",
                "opendet.detector.encoder_layers=1", "opendet.detector.decoder_layers=3",
                "opendet.detector.max_queries=20", f"opendet.name_generator.t5_dir={TINY_T5_DIR}",
                "opendet.loss.pseudo_names=true"],
}


@pytest.fixture(scope="module")
def job_store(tmp_path_factory):
    """A store both jobs wrote from six good images (tiny CLIP, given captions), and the world it came from."""
    root = tmp_path_factory.mktemp("chain")
    world = JobWorld(root, save_local_dir(root / "clip", seed=1), make_sample(root / "sample", images=6),
                     root / "captions.jsonl")
    store = root / "store"
    extract_features.run(world.extract_argv(str(store)))
    write_captions(world, store)
    pseudo_labels.run(world.labels_argv(str(store)))
    return world, store


@pytest.mark.parametrize("method", ["hdovd", "opendet"])
def test_each_method_trains_and_evaluates_on_a_store_the_jobs_wrote(job_store, method, tmp_path, capsys):
    world, store = job_store
    reader = StoreReader(store)
    assert reader.read_table("pseudo_labels").num_rows > 0  # the pseudo boxes reach the trainer
    dim = len(reader.read_table("regions", ["embedding"]).column("embedding")[0])
    settings = [f"method={method}", f"store={store}", f"image_root={world.sample.image_root}",
                f"out_dir={tmp_path / method}", "batch_size=2", "num_workers=0", "max_steps=2", "log_every=1",
                "stream.image_size=64", f"eval.annotations={world.sample.annotations}",
                f"eval.image_root={world.sample.image_root}", *TINY_METHOD_SETTINGS[method]]
    if method == "hdovd":
        settings.append(f"hdovd.detector.embed_dim={dim}")
    assert train_main([arg for setting in settings for arg in ("--set", setting)]) == 0
    printed = capsys.readouterr().out
    assert f"training {method}" in printed and "evaluation (" in printed
    metrics = json.loads((tmp_path / method / "metrics.json").read_text())["metrics"]
    assert {"AP50_all", "AP50_base", "AP50_novel"} <= set(metrics)
    assert all(value is None or 0.0 <= value <= 1.0 for key, value in metrics.items() if key.startswith("AP50"))
    steps = [json.loads(line)["step"] for line in (tmp_path / method / "scalars.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
