"""`python -m trainers.proposer.recall`: proposal files and a network checkpoint scored side by side on a small
ShapesOV sample; clear exits on bad input."""
from __future__ import annotations

import json

import torch

from beam_jobs.proposals import run as run_proposals
from schemas.config import to_dict
from tests.float32 import approx32
from tests.tiny_proposer import save_tiny_proposer
from trainers.proposer.config import ProposerConfig
from trainers.proposer.network import ProposalNetwork
from trainers.proposer.recall import main


def test_files_and_a_checkpoint_side_by_side(sample, tmp_path, capsys):
    torch.manual_seed(0)
    config = ProposerConfig()
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"detector": ProposalNetwork.from_config(config.network).state_dict(),
                "config": {"proposer": to_dict(config)}}, checkpoint)
    annotations = sample / "annotations"
    out = tmp_path / "recall.json"
    assert main(["--annotations", str(annotations / "train_base.json"),
                 "--novel-annotations", str(annotations / "train_novel_heldout.json"),
                 "--split", str(sample / "ov_split.json"), "--image-root", str(sample / "images" / "train"),
                 "--proposals", str(sample / "proposals" / "train.json"),
                 "--proposals", str(sample / "proposals" / "train.pkl"),
                 "--checkpoint", str(checkpoint), "--max-dets", "5,10", "--json-out", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["proposals", "GT", "AR@5", "AR@10", "R50@5", "R50@10", "num_gt"]
    assert len(table) == 1 + 3 * 2  # three sources x (base, novel)
    rows = json.loads(out.read_text())
    assert set(rows) == {str(sample / "proposals" / "train.json"), str(sample / "proposals" / "train.pkl"),
                         str(checkpoint)}
    heldout = json.loads((annotations / "train_novel_heldout.json").read_text())
    for sides in rows.values():
        assert sides["novel"]["num_gt"] == len(heldout["annotations"])
        assert 0.0 <= sides["novel"]["AR@10"] <= sides["novel"]["R50@10"] <= 1.0


def test_bad_input_exits_2_with_the_reason(sample, tmp_path, capsys):
    annotations = str(sample / "annotations" / "train_base.json")
    split = str(sample / "ov_split.json")
    assert main(["--annotations", annotations, "--split", split, "--checkpoint", str(tmp_path / "x.pt")]) == 2
    assert "--checkpoint needs --image-root" in capsys.readouterr().err
    assert main(["--annotations", annotations, "--split", split, "--image-root", str(sample),
                 "--checkpoint", str(tmp_path / "x.pt")]) == 2
    assert "x.pt (config key --checkpoint)" in capsys.readouterr().err
    assert main(["--annotations", annotations, "--split", split, "--proposals", str(tmp_path / "none.json")]) == 2
    assert "none.json" in capsys.readouterr().err


def test_a_stores_proposals_stage_scores_as_the_network_that_wrote_it(sample, tmp_path, capsys):
    """The stage the proposals job wrote, read back from the store, and the same checkpoint run here give the same
    recall: the store holds what the network proposes."""
    checkpoint = save_tiny_proposer(tmp_path / "proposer" / "checkpoint.pt", top_k=20)
    annotations, split = str(sample / "annotations" / "train_base.json"), str(sample / "ov_split.json")
    store = tmp_path / "store"
    run_proposals([f"--set=dataset.annotations={annotations}", f"--set=dataset.image_root={sample / 'images' / 'train'}",
                   f"--set=proposer.checkpoint={checkpoint}", "--set=output.top_k=20", "--set=shard_size=4",
                   "--set=runtime.device=cpu", f"--set=recall.split={split}", "--store", str(store)])
    out = tmp_path / "recall.json"
    assert main(["--annotations", annotations, "--split", split, "--image-root", str(sample / "images" / "train"),
                 "--store", str(store), "--checkpoint", str(checkpoint), "--max-dets", "5,10",
                 "--json-out", str(out)]) == 0
    rows = json.loads(out.read_text())
    stage, network = rows[f"{store} (proposals stage)"], rows[str(checkpoint)]
    assert stage.keys() == network.keys() == {"base"}
    assert stage["base"] == approx32(network["base"])
    assert main(["--annotations", annotations, "--split", split, "--store", str(tmp_path / "nothing")]) == 2
    assert "make proposals" in capsys.readouterr().err
