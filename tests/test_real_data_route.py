"""The real-data walk-through of docs/real-data.md, run as written, from the first stage to evaluation and the exports,
so that any break between the stages fails the suite; and a user's first wrong configs, each stopped in seconds,
before any work, with its config key named.

The world is made here: photo-sized JPEGs, a base-only COCO file, an evaluation file with every class, a split, a
proposals JSON and captions keyed by box; a random-weight ViT-B-32 written as an open_clip `local-dir:` folder by the
page's own recipe; a tiny GPT-2 ClipCap in the official layout and GPT-2's config and tokenizer, put in the session's
Hugging Face cache under the names the pseudo-labels preset gives (tests/hub_cache.py); a random-weight torchvision
ResNet-50 state dict as the backbone file. The page's settings block is replaced by this world's values (the only
block a user edits: its TRIAL line shrinks the ResNet-50 FPN preset), every other block runs verbatim, in page order,
in one bash session from the repository root with the virtual environment first on PATH. make's `setup` step is
taken as done (`-o setup`): the test runs in the environment it would set up.

Between the blocks the session runs the checks that need a store at that point; a block added to the page (the
`proposals` stage, when it comes: its block goes first and reads nothing this world lacks) runs in its place without
a change here, and `HOOKS` says after which block each check runs.
"""
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from featurestore.reader import StoreReader
from pipelines.pseudo_labels_config import PseudoLabelsConfig
from schemas.config import load_config
from tests.hub_cache import add_commit, files_of
from tests.tiny_teachers import CAPTION_CORPUS, write_tiny_clipcap

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "real-data.md"
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}, {"id": 3, "name": "dog"},
              {"id": 4, "name": "umbrella"}]
SPLIT = {"base": ["person", "car", "dog"], "novel": ["umbrella"]}
# The ResNet-50 FPN preset at a size a CPU trains two steps of in seconds.
TRIAL = ("max_steps=2 batch_size=2 num_workers=0 checkpoint_every=1000 stream.image_size=160 stream.shuffle_buffer=4 "
         "hdovd.detector.min_size=128 hdovd.detector.max_size=160 hdovd.detector.rpn_pre_nms_top_n_train=200 "
         "hdovd.detector.rpn_post_nms_top_n_train=100 hdovd.detector.rpn_pre_nms_top_n_test=100 "
         "hdovd.detector.rpn_post_nms_top_n_test=50 hdovd.detector.box_batch_size_per_image=64 eval.batch_size=2")
pytestmark = pytest.mark.slow  # a bash session of make targets and CLI processes, minutes long
WRONG_CONFIG_SECONDS = 150  # start-up of Python, torch and Beam: 91 s on a 2-core machine at load 8; the work takes far longer
# The proposal network's first pass: two steps at a small size (ResNet-50 FPN at 800 px is minutes per step here).
PROPOSER_TRIAL = ("max_steps=2 batch_size=2 num_workers=0 proposer.network.min_size=320 proposer.network.max_size=480 "
                  "eval.batch_size=2")


def page_blocks() -> tuple[str, list[str], str]:
    """(settings block, route blocks in page order, the local-dir recipe) of the page."""
    text = PAGE.read_text()
    settings = re.findall(r"<!-- route: settings -->\n```bash\n(.*?)```", text, flags=re.S)
    route = re.findall(r"<!-- route -->\n```bash\n(.*?)```", text, flags=re.S)
    recipe = re.findall(r"<!-- recipe: local-dir -->\n```python\n(.*?)```", text, flags=re.S)
    assert len(settings) == 1 and len(recipe) == 1 and len(route) >= 5
    return settings[0], route, recipe[0]


def write_photos(folder: Path, ids: list[int], rng: np.random.Generator, novel: bool) -> tuple[list, list]:
    """Photo-sized JPEGs with a large person, a car, a small dog (and an umbrella when `novel`): COCO images and
    annotations."""
    folder.mkdir(parents=True)
    images, annotations = [], []
    for image_id in ids:
        width, height = (640, 480) if image_id % 2 else (480, 640)
        pixels = rng.integers(60, 200, (height // 8, width // 8, 3), dtype=np.uint8)
        image = Image.fromarray(np.kron(pixels, np.ones((8, 8, 1), np.uint8)))
        draw = ImageDraw.Draw(image)
        boxes = [(1, [0.1 * width, 0.15 * height, 0.5 * width, 0.85 * height]),  # a person: a third of the image
                 (2, [0.55 * width, 0.55 * height, 0.95 * width, 0.9 * height]),
                 (3, [0.6 * width, 0.1 * height, 0.75 * width, 0.25 * height])]
        if novel:
            boxes.append((4, [0.62 * width, 0.3 * height, 0.9 * width, 0.5 * height]))
        for category, (x0, y0, x1, y1) in boxes:
            draw.ellipse([x0, y0, x1, y1], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
            annotations.append({"id": len(annotations) + 1 + 100 * image_id, "image_id": image_id,
                                "category_id": category, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        image.save(folder / f"{image_id:06d}.jpg", quality=90)
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": width, "height": height})
    return images, annotations


def write_data(data: Path) -> None:
    """The files the page's settings say DATA holds."""
    rng = np.random.default_rng(0)
    images, annotations = write_photos(data / "images", [1, 2, 3, 4], rng, novel=False)
    (data / "train_base.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                      "categories": CATEGORIES}))
    val_images, val_annotations = write_photos(data / "val_images", [11, 12], rng, novel=True)
    (data / "val.json").write_text(json.dumps({"images": val_images, "annotations": val_annotations,
                                               "categories": CATEGORIES}))
    (data / "split.json").write_text(json.dumps(SPLIT))
    proposals = []
    for image in images:  # where the umbrella would be, on nothing, and on the person (left out: a base box)
        width, height = image["width"], image["height"]
        for x0, y0, x1, y1 in ([0.62, 0.3, 0.9, 0.5], [0.05, 0.05, 0.3, 0.12], [0.12, 0.16, 0.5, 0.84],
                               [0.2, 0.6, 0.45, 0.95], [0.0, 0.0, 0.98, 0.97]):
            proposals.append({"image_id": image["id"], "score": 0.9,
                              "bbox": [x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height]})
    (data / "proposals.json").write_text(json.dumps(proposals))
    captions = [{"image_id": p["image_id"], "bbox": p["bbox"], "caption": "a red umbrella over a wooden bench"}
                for p in proposals]
    captions.append({"image_id": 1, "bbox": [600, 5, 30, 20], "caption": "a box no proposal has"})
    (data / "captions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in captions))


def write_models(root: Path, recipe: str) -> tuple[Path, Path]:
    """(CLIP folder, backbone file). The ClipCap and GPT-2 of the pseudo-labels preset go into the session's Hugging
    Face cache under the names the preset gives them."""
    clip = root / "clip-vit-b-32"
    script = (recipe.replace('FOLDER = pathlib.Path("models/clip-vit-b-32")', f"FOLDER = pathlib.Path({str(clip)!r})")
              .replace('MODEL, PRETRAINED = "ViT-B-32-quickgelu", "openai"',
                       'MODEL, PRETRAINED = "ViT-B-32-quickgelu", None'))  # random weights: nothing to fetch
    assert "None" in script and str(clip) in script
    done = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", script], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"CLIP_MODEL=local-dir:{clip} CLIP_WEIGHTS=null"
    preset = load_config(PseudoLabelsConfig, REPO / "configs" / "ov_coco" / "pseudo_labels.yaml").captioner.clipcap
    org, name, file = preset.checkpoint.removeprefix("hf-hub:").split("/", 2)
    checkpoint, gpt_dir = write_clipcap_that_says(root / "clipcap", "umbrella")
    add_commit(f"{org}/{name}", {file: checkpoint})
    add_commit(preset.gpt_dir, files_of(gpt_dir))
    import torchvision

    backbone = root / "resnet50-imagenet.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50().state_dict(), backbone)
    return clip, backbone


def write_clipcap_that_says(folder: Path, word: str) -> tuple[Path, Path]:
    """(checkpoint, GPT-2 folder) of a tiny random ClipCap in the official layout, for ViT-B/32's 512-d embeddings,
    whose GPT-2 says `word` at every step: its last layer norm passes nothing but a bias pointing at the word's
    (enlarged) token embedding, which the tied output layer then scores highest. A random captioner's captions often
    hold no noun, and a caption without a candidate label is a failure row: a handful of images would trip the job's
    failure-rate gate, which is not what this test is about."""
    from transformers import AutoTokenizer

    # A tokenizer that knows the word as one token: it learns its merges from captions that say it often.
    checkpoint, gpt_dir = write_tiny_clipcap(folder, prefix_size=512,
                                             corpus=[*CAPTION_CORPUS, *[f"a {word} on a bench."] * 50])
    (token,) = AutoTokenizer.from_pretrained(gpt_dir).encode(f" {word}")
    state = torch.load(checkpoint, weights_only=True)
    embedding = state["gpt.transformer.wte.weight"]
    embedding[token] = 10 * embedding[token] / embedding[token].norm()
    state["gpt.transformer.ln_f.weight"] = torch.zeros_like(state["gpt.transformer.ln_f.weight"])
    state["gpt.transformer.ln_f.bias"] = embedding[token].clone()
    torch.save(state, checkpoint)
    return checkpoint, gpt_dir


# Checks that run after the route block whose text contains the key: bash, with the route's variables. Each wrong
# config writes its exit code, seconds and output under $WORK/checks/<name>.
WRONG_CONFIG = '''
mkdir -p $WORK/checks
check() {{  # name, command...: run a command expected to fail, keep its status, seconds and output
  local name=$1; shift
  local started=$SECONDS status=0
  "$@" > $WORK/checks/$name.out 2>&1 || status=$?
  echo "$status $((SECONDS - started))" > $WORK/checks/$name.status
}}
{checks}
'''
AFTER_FEATURES = WRONG_CONFIG.format(checks='''
# The ShapesOV pseudo-labels config, its teacher's paths made real, on this 512-d store.
printf '_base_: %s\\ncaptioner:\\n  clipcap:\\n    checkpoint: %s\\n    gpt_dir: %s\\n' \\
  "$PWD/configs/shapes/pseudo_labels.yaml" "$PWD/assets/teachers/clipcap/clipcap_mlp.pt" \\
  "$PWD/assets/teachers/clipcap/gpt2" > $WORK/my_labels.yaml
check shapes_labels make pseudo-labels CONFIG=$WORK/my_labels.yaml STORE=$WORK/store
# Training before pseudo-labels ran: a store without pseudo labels.
check no_pseudo_labels make train CONFIG=configs/ov_coco/hdovd.yaml STORE=$WORK/store RUN=$WORK/early \\
  SET="image_root=$DATA/images eval.annotations=$DATA/val.json eval.image_root=$DATA/val_images \
       hdovd.detector.backbone_weights=$BACKBONE $TRIAL"
# The preset's placeholder evaluation path.
check placeholder_eval make train CONFIG=configs/ov_coco/hdovd.yaml STORE=$WORK/store RUN=$WORK/early \\
  SET="image_root=$DATA/images hdovd.detector.backbone_weights=$BACKBONE hdovd.allow_no_pseudo_labels=true $TRIAL"
python -m featurestore inspect $WORK/store > $WORK/inspect.txt
''')
HOOKS = {
    "make extract-features": AFTER_FEATURES,
    # The checkpoint holds every weight: the backbone file is gone before `make eval` reads the checkpoint.
    "make train": "mv $BACKBONE $BACKBONE.gone\n",
}


def route_script(settings: dict[str, str]) -> str:
    own_settings, blocks, _ = page_blocks()
    code = "\n".join(line.split("#", 1)[0] for line in own_settings.splitlines())
    assert re.findall(r"(\w+)=", code) == list(settings)  # the page's settings, each given its value here
    lines = ["set -euo pipefail", "make() { command make --no-print-directory -o setup \"$@\"; }"]
    lines += [f"{key}={value}" for key, value in settings.items()]
    for number, block in enumerate(blocks):
        lines += [f"echo '== route block {number + 1}'", block]
        lines += [hook for key, hook in HOOKS.items() if key in block]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def route(tmp_path_factory):
    """The whole route, once: (WORK folder, the session's output)."""
    root = tmp_path_factory.mktemp("route")
    data, work = root / "data", root / "work"
    write_data(data)
    work.mkdir()
    _, _, recipe = page_blocks()
    clip, backbone = write_models(root / "models", recipe)
    settings = {"DATA": str(data), "WORK": str(work), "CLIP_MODEL": f"local-dir:{clip}", "CLIP_WEIGHTS": "null",
                "BACKBONE": str(backbone), "TRIAL": f'"{TRIAL}"', "PROPOSER_TRIAL": f'"{PROPOSER_TRIAL}"'}
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", route_script(settings)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=3000)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    return work, output


def check_result(work: Path, name: str) -> tuple[int, float, str]:
    status, seconds = (work / "checks" / f"{name}.status").read_text().split()
    return int(status), float(seconds), (work / "checks" / f"{name}.out").read_text()


def test_the_route_runs_from_features_to_evaluation_and_exports(route):
    work, output = route
    reader = StoreReader(work / "store")
    assert reader.shards("regions") and reader.shards("pseudo_labels") and reader.shards("proposals")
    # The proposal network trained on the base file and was scored on the validation file's base and novel boxes.
    recall = json.loads((work / "proposer" / "metrics.json").read_text())["metrics"]
    assert set(recall) == {"base", "novel"} and 0 <= recall["novel"]["AR@10"] <= recall["novel"]["R50@10"] <= 1
    # The square window's cap: no GT box of these photos got the whole image (the person is a third of it).
    inspect = (work / "inspect.txt").read_text()
    assert "crops (square, capped at 0.5 of the image's area)" in inspect
    assert re.search(r"gt +0 / \d+ of 12", inspect), inspect
    # The given captions were the last labels: every pseudo box is labelled from them, one caption unmatched.
    labels = set(reader.read_table("pseudo_labels", ["label"]).column("label").to_pylist())
    assert labels <= {"umbrella", "red umbrella", "bench", "wooden bench"} and labels
    stored = sum(source == "proposal" for source in reader.read_table("regions", ["source"]).column("source").to_pylist())
    captions = len((work.parent / "data" / "captions.jsonl").read_text().splitlines())
    assert f"{captions - stored} unmatched" in output and captions - stored >= 1
    # Training said first what it trains on, evaluated, and make eval did it again without the backbone file.
    assert re.search(r"hdovd: \d+ pseudo boxes distilled \(CKD, RKD\); \d+ of them labelled, \d+ distinct pseudo "
                     r"classes", output)
    metrics = json.loads((work / "hdovd" / "metrics.json").read_text())
    assert {"AP50_all", "AP50_base", "AP50_novel"} <= set(metrics["metrics"])
    assert output.count("evaluation (") == 3  # the proposal network's, then HD-OVD's run and make eval
    assert (work / "report" / "index.html").is_file()
    exported = json.loads((work / "pseudo_boxes.json").read_text())
    assert {a["source"] for a in exported["annotations"]} == {"gt", "pseudo"}
    assert (work / "hdovd-official" / "proposals.pkl").is_file()
    assert re.search(r"wrote .*pseudo_boxes\.json: 4 images", output)


@pytest.mark.parametrize("name, says", [
    ("shapes_labels", ["config key 'captioner.clipcap.checkpoint'", "takes 64-d CLIP embeddings",
                       "holds 512-d ones", "my_labels.yaml)"]),
    ("no_pseudo_labels", ["config key 'store': ", "has no pseudo labels", "set hdovd.allow_no_pseudo_labels=true",
                          "(set in --set)"]),
    ("placeholder_eval", ["config key 'eval.annotations'", "(set in configs/ov_coco/hdovd.yaml)"]),
])
def test_a_first_wrong_config_fails_in_seconds_with_its_key(route, name, says):
    work, _ = route
    status, seconds, output = check_result(work, name)
    assert status == 2 and seconds < WRONG_CONFIG_SECONDS, (status, seconds, output[-2000:])
    for text in says:
        assert text in output, (text, output[-2000:])
    assert "Traceback" not in output
    assert not (work / "early").exists()  # nothing trained
