"""The labelers side by side on the same pseudo boxes (`make compare-labelers`): ClipCap and the `vlm` labeler with
each region prompt label the pseudo boxes of one ShapesOV store, each in its own copy of it, and the table goes to
docs/labelers.md with the command behind it.

    .venv/bin/python -m bench.compare_labelers --store data/store [--config configs/shapes/pseudo_labels.yaml]
        [--work runs/labelers] [--doc docs/labelers.md]

Per labeler, one run of the pseudo-labels job (`python -m beam_jobs.pseudo_labels`, as `make pseudo-labels` runs it):
- labelled: the share of pseudo boxes whose caption or answer left a candidate label; the others name no object
  (rows with no label and score 0, like ClipCap's "a patch of striped background") or are dead letters; and
  candidates per labelled box;
- precision and label accuracy against held-out ground truth (featurestore/commands/label_quality.py): precision =
  labelled boxes covering any object at IoU >= 0.5 / labelled boxes; accuracy = boxes labelled with the class of the
  object they cover / labelled covering boxes, over all and over the novel objects only (the labelers' bar); and the
  covering boxes whose caption named no object, which accuracy leaves out;
- boxes per second: pseudo boxes over the labeler's own model time (the shards' `caption` seconds), and over the
  job's wall time (Beam start-up, the model load, spaCy and the CLIP pick included).
`blip2` and `given` are left out: ShapesOV has no BLIP-2 teacher, and given captions would be ground truth.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from beam_jobs.job_main import FAILURE_RATE_EXIT
from bench.common import REPO, machine, module_command
from featurestore.commands.label_quality import (ground_truth_files, novel_class_ids, pseudo_box_quality,
                                                 read_ground_truth)
from featurestore.commands.labels import novel_accuracy
from featurestore.reader import StoreReader
from featurestore.stages import PSEUDO_LABELS

# The page's notes below this line are written by hand; a new table replaces everything above it.
NOTES_MARKER = "<!-- make compare-labelers rewrites everything above this line and keeps the notes below it -->"
# name → the pseudo-labels settings that pick the labeler (on top of configs/shapes/pseudo_labels.yaml).
LABELERS = {
    "clipcap": ["captioner.name=clipcap"],
    "vlm, crop prompt": ["captioner.name=vlm", "captioner.vlm.region_prompt=crop"],
    "vlm, box prompt": ["captioner.name=vlm", "captioner.vlm.region_prompt=box"],
}


def label_store(store: Path, copy: Path, configs: list[str], settings: list[str], log) -> dict:
    """A copy of `store` labelled by one run of the job with `configs` and `settings`; returns what it measured."""
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    argv = ([sys.executable, "-m", "beam_jobs.pseudo_labels"]
            + [flag for config in configs for flag in ("--config", config)]
            + ["--store", str(copy), "--overwrite", "--runner=FnApiRunner"]
            + [flag for setting in settings for flag in ("--set", setting)])
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - started
    (copy.parent / f"{copy.name}.log").write_text(done.stdout + done.stderr)
    # FAILURE_RATE_EXIT: everything is committed but more boxes than runtime.max_failure_rate got no label; the
    # labeler is still measured, and the table says so.
    if done.returncode not in (0, FAILURE_RATE_EXIT):
        raise RuntimeError(f"the pseudo-labels job exited with {done.returncode}; see {copy.parent / copy.name}.log:\n"
                           f"{done.stderr[-2000:]}")
    reader = StoreReader(copy)
    summary = reader.manifest.stages[PSEUDO_LABELS].summary
    caption_seconds = sum(reader.shard_stats(PSEUDO_LABELS, shard)["seconds"].get("caption", 0.0)
                          for shard in reader.shards(PSEUDO_LABELS))
    rows = reader.read_table(PSEUDO_LABELS, ["candidates", "label"]).to_pylist()
    candidates = [len(row["candidates"]) for row in rows if row["label"] is not None]
    files = ground_truth_files(reader, None, None)
    if not files:
        raise FileNotFoundError(f"no held-out ground truth beside the annotations of {store}: a ShapesOV store "
                                f"(make sample extract-features) has it")
    quality = pseudo_box_quality(reader, read_ground_truth(files, novel_class_ids(reader)))
    novel = novel_accuracy(quality)
    log(f"  {summary['labelled']} of {summary['regions']} labelled, precision {quality['precision']:.3f}, "
        f"accuracy {quality['accuracy']:.3f}, novel {novel['accuracy']:.3f}, {wall:.0f} s")
    return {"settings": settings, "over_failure_rate": done.returncode == FAILURE_RATE_EXIT,
            "pseudo_boxes": summary["regions"], "labelled": summary["labelled"],
            "failures_by_kind": summary["failures_by_kind"], "candidates_per_labelled_box":
                sum(candidates) / max(len(candidates), 1),
            "no_object": summary.get("no_object", 0), "no_object_covering": quality["no_object_covering"],
            "precision": quality["precision"], "covering": quality["covering_boxes"], "correct": quality["correct"],
            "accuracy": quality["accuracy"], "novel_covering": novel["matched_boxes"],
            "novel_correct": novel["correct"],
            "novel_accuracy": novel["accuracy"], "caption_seconds": caption_seconds, "wall_seconds": wall,
            "boxes_per_model_second": summary["regions"] / caption_seconds if caption_seconds else None,
            "boxes_per_wall_second": summary["regions"] / wall}


def markdown(results: dict, command: str, environment: dict, teacher: dict | None) -> str:
    """docs/labelers.md."""
    lines = ["# Labelers on the same pseudo boxes", "",
             "ClipCap and the `vlm` labeler (an instruction-following image-text model asked per box, with each region "
             "prompt) label the pseudo boxes of the ShapesOV demo store; each labeler runs on its own copy of the "
             "store, so all see the same boxes. Made by", "", f"    {command}", "",
             "(`make compare-labelers` runs it after `make sample teachers proposals teacher-vlm extract-features`).", "",
             "| labeler | pseudo boxes | labelled | named no object (of them covering an object) | candidates per "
             "box | precision | accuracy, covering boxes | accuracy, boxes on a novel object | boxes/s, labeler | "
             "boxes/s, job wall |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        gate = " (over runtime.max_failure_rate)" if r["over_failure_rate"] else ""
        lines.append(f"| {name} | {r['pseudo_boxes']:,} | {r['labelled'] / r['pseudo_boxes']:.1%}{gate} | "
                     f"{r['no_object']:,} ({r['no_object_covering']:,}) | {r['candidates_per_labelled_box']:.2f} | "
                     f"{r['precision']:.1%} | {r['accuracy']:.1%} "
                     f"({r['correct']:,} / {r['covering']:,}) | **{r['novel_accuracy']:.1%}** "
                     f"({r['novel_correct']:,} / {r['novel_covering']:,}) | {r['boxes_per_model_second']:,.0f} | "
                     f"{r['boxes_per_wall_second']:,.0f} |")
    clipcap = results.get("clipcap", {}).get("novel_accuracy")
    if clipcap is not None:
        lines.append("")
        for name, r in results.items():
            if name.startswith("vlm"):
                verdict = "met" if r["novel_accuracy"] >= clipcap else "**not met**"
                lines.append(f"- the bar, {name}: accuracy on boxes covering a novel object {r['novel_accuracy']:.1%} "
                             f">= ClipCap's {clipcap:.1%}: {verdict}")
    lines += ["", "One run of each labeler (the job on DirectRunner's in-process runner), on "
              f"{environment['cpu_model']} ({environment['nproc']} cores, {environment['torch_threads']} torch "
              f"threads, 1-minute load average {environment['load_average_1min']} when it ended: a shared machine, "
              "so compare the speeds within this table only).", "",
              "- *labelled*: pseudo boxes whose caption or answer left at least one candidate label after noun "
              "parsing; *named no object*: the boxes whose caption or answer left none (\"a patch of striped "
              "background\"): rows with no label and score 0, not failures; in brackets, those of them that cover an "
              "object at IoU >= 0.5.",
              "- *precision*: labelled pseudo boxes that cover an object (any class, IoU >= 0.5) / labelled pseudo "
              "boxes; *accuracy*: covering boxes labelled with the class of the object they cover / covering boxes "
              "(`python -m featurestore labels STORE`, featurestore/commands/label_quality.py). Both count labelled "
              "boxes only: a labeler that names no object on a box on nothing raises its precision, and one that "
              "names no object on a box on an object leaves that box out of its accuracy (the bracketed count).",
              "- *boxes/s, labeler*: pseudo boxes / the captioner's own seconds (model time in the shards' stats); "
              "*job wall*: over the whole job, Beam start-up, model load, spaCy and the CLIP pick included.",
              "- ShapesOV has no BLIP-2 teacher, and `given` captions would be the ground truth itself: both are left "
              "out."]
    if teacher:
        report = ", ".join(f"{kind} {entry['names_the_shape']:.1%}" for kind, entry in teacher["report"].items())
        lines += ["", f"The `vlm` teacher (`make teacher-vlm`, shapesov/teachers/vlm_teacher.py): a LLaVA of the "
                  f"ShapesOV CLIP's image tower, a projector and a small Llama, trained in "
                  f"{teacher['train_seconds']:.0f} s on {teacher['examples']:,} examples; on fresh scenes it names "
                  f"the shape in: {report}."]
    return "\n".join(lines) + "\n"


def write_page(doc: Path, table: str) -> None:
    """`table` replaces what is above NOTES_MARKER in `doc`; the notes below it stay."""
    notes = doc.read_text().partition(NOTES_MARKER)[2] if doc.is_file() else "\n"
    doc.write_text(table + "\n" + NOTES_MARKER + notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("data/store"), help="a ShapesOV extract-features store")
    parser.add_argument("--config", action="append", help="the pseudo-labels config they share (repeatable, merged "
                        "left to right; default configs/shapes/pseudo_labels.yaml)")
    parser.add_argument("--work", type=Path, default=Path("runs/labelers"), help="folder for the store copies")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "labelers.md", help="the table's page")
    parser.add_argument("--teachers", type=Path, default=Path("data/teachers"), help="for the vlm teacher's report")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="a pseudo-labels setting for every labeler (repeatable)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    configs = args.config or ["configs/shapes/pseudo_labels.yaml"]
    results = {}
    for name, settings in LABELERS.items():
        print(f"{name}: {' '.join(settings + args.extra)}", flush=True)
        results[name] = label_store(args.store, args.work / name.replace(", ", "-").replace(" ", "-"), configs,
                                    settings + args.extra, lambda line: print(line, flush=True))
    command = module_command("compare_labelers", sys.argv[1:] if argv is None else argv)
    environment = machine()
    (args.work / "results.json").write_text(json.dumps({"command": command, "machine": environment,
                                                        "labelers": results}, indent=2) + "\n")
    manifest = args.teachers / "vlm" / "MANIFEST.json"
    teacher = json.loads(manifest.read_text()) if manifest.is_file() else None
    write_page(args.doc, markdown(results, command, environment, teacher))
    print(f"wrote {args.doc} and {args.work / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
