"""The HTML page of `featurestore report`, from the report's data (report.json): one file with inline CSS and inline
SVG plots, no script and no remote resource, so it opens from `file://` anywhere the crops/ folder sits beside it.
Every value from the store is escaped: captions and labels are text produced by models."""
from __future__ import annotations

import json
from html import escape

from featurestore.commands.svg_plots import stacked_bars

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1280px;padding:0 20px 40px;color:#222}
header{border-bottom:1px solid #ccc;margin-bottom:8px} nav a{margin-right:14px}
h2{margin-top:34px;border-bottom:1px solid #eee} h3{margin:22px 0 6px}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top} th{background:#f4f4f4} td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px} .stat{border:1px solid #ddd;border-radius:6px;padding:8px 14px}
.stat b{display:block;font-size:22px} .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));
gap:10px} figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:6px;font-size:12px;background:#fafafa}
figure img{display:block;margin:0 auto 4px;image-rendering:pixelated;max-width:100%}
.bar{background:#4e79a7;height:10px;display:inline-block} .muted{color:#777} .bad{color:#b00}
.ok{color:#070} .tag{display:inline-block;border-radius:3px;padding:0 4px;font-size:11px;color:#fff}
.tag.ok{background:#3a7} .tag.bad{background:#c33} .tag.none{background:#999} pre{overflow:auto;max-height:320px;
background:#f7f7f7;padding:8px;font-size:12px} .missing{padding:30px 4px;text-align:center;color:#b00}
"""
VOCABULARY_ROWS = 50  # labels listed on the page
SECTIONS = [("stages", "Stages"), ("timings", "Throughput"), ("failures", "Failures"),
            ("recall", "Proposal recall"), ("crops", "Crop windows"), ("vocabulary", "Labels"),
            ("grids", "Crops per label"), ("scores", "Scores"), ("duplicates", "Duplicates and synonyms"),
            ("quality", "Precision")]


def _e(value) -> str:
    return escape("" if value is None else str(value))


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else _e(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _table(headers: list[str] | None, rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """rows hold HTML already escaped; columns in `numeric` are right-aligned; no header row without `headers`."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers or ())
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{f'<thead><tr>{head}</tr></thead>' if head else ''}<tbody>{body}</tbody></table>"


def _stat(label: str, value: str) -> str:
    return f'<div class="stat"><b>{value}</b>{_e(label)}</div>'


def summary_cards(report: dict) -> str:
    cards = []
    for stage in report["stages"]:
        summary = stage["summary"]
        for key in ("images", "regions", "labelled", "no_object"):
            if key in summary:
                cards.append(_stat(f"{key.replace('_', ' ')} ({stage['stage']})", _num(summary[key])))
    cards.append(_stat("failure rows", _num(sum(f["count"] for f in report["failures"]))))
    recall = report.get("proposal_recall")
    for side, metrics in (recall or {}).get("sides", {}).items():
        if metrics.get("AR@10") is not None:
            cards.append(_stat(f"{side} AR@10 (proposals)", _pct(metrics["AR@10"])))
    labels = report.get("labels")
    if labels:
        cards.append(_stat("unique pseudo labels", _num(labels["vocabulary"]["unique_labels"])))
        quality = labels["quality"]
        if quality and quality["precision"] is not None:
            cards.append(_stat(f"pseudo-box precision (IoU ≥ {quality['iou_threshold']})",
                               _pct(quality["precision"])))
    return f'<div class="cards">{"".join(cards)}</div>'


def stages_section(report: dict) -> str:
    parts = []
    for stage in report["stages"]:
        facts = [["config hash", _e(stage["config_hash"])], ["code version", _e(stage["code_version"])],
                 ["started", _e(stage["started"])], ["finished", _e(stage["finished"])],
                 ["shards", _num(stage["shards"])], ["embedding dim", _num(stage["embedding_dim"])]]
        models = [[_e(role), _e(m["name"]), _e(m["path"]), f"<code>{_e((m['sha256'] or '')[:16])}…</code>",
                   _e(m["prompts"])] for role, m in stage["models"].items()]
        summary = [[_e(k), _e(json.dumps(v, sort_keys=True)) if isinstance(v, (dict, list)) else _num(v)]
                   for k, v in sorted(stage["summary"].items())]
        parts.append(f"<h3>{_e(stage['stage'])}</h3>{_table(None, facts)}"
                     + (_table(["model", "name", "path", "sha256", "prompts"], models) if models else "")
                     + f"<details><summary>summary of the last run</summary>{_table(['key', 'value'], summary)}"
                       f"</details><details><summary>resolved config</summary>"
                       f"<pre>{_e(json.dumps(stage['config'], indent=2, sort_keys=True))}</pre></details>")
    return "".join(parts) or "<p>The manifest records no stage.</p>"


def timings_section(report: dict) -> str:
    parts = []
    for stage in report["timings"]:
        shards = [str(row["shard"]) for row in stage["shards"]]
        seconds = {step: [row["seconds"][step] for row in stage["shards"]] for step in stage["steps"]}
        rate = [row["items_per_second"] or 0.0 for row in stage["shards"]]
        totals = [[_e(step), _num(total), _pct(total / stage["busy_seconds"]) if stage["busy_seconds"] else "n/a"]
                  for step, total in stage["step_totals"].items()]
        parts.append(
            f"<h3>{_e(stage['stage'])}</h3><p>{_num(stage['items'])} {_e(stage['items_named'])} in "
            f"{_num(stage['busy_seconds'])} busy seconds: <b>{_num(stage['items_per_second'])} "
            f"{_e(stage['items_named'])}/s</b> per worker; wall time of the last run "
            f"{_num(stage['wall_seconds'])} s.</p>"
            + stacked_bars(f"{stage['stage']}: seconds per step and shard", shards, seconds, "seconds", "shard")
            + stacked_bars(f"{stage['stage']}: {stage['items_named']} per busy second", shards,
                           {f"{stage['items_named']}/s": rate}, f"{stage['items_named']}/s", "shard")
            + _table(["step", "seconds", "share"], totals, {1, 2}))
    return "".join(parts) or "<p>No shard of the store has committed stats.</p>"


def failures_section(report: dict) -> str:
    if not report["failures"]:
        return '<p class="ok">No failure rows: every input became rows.</p>'
    rows = []
    for group in report["failures"]:
        examples = "<br>".join(f"image {_e(x['image_id'])}" + (f" region {_e(x['region_id'])}"
                                                                if x["region_id"] is not None else "")
                               + (f" ({_e(x['file_name'])})" if x["file_name"] else "") + f": {_e(x['message'])}"
                               for x in group["examples"])
        rows.append([_e(group["stage"]), f"<b>{_e(group['kind'])}</b>", _num(group["count"]), examples])
    return _table(["stage", "kind", "rows", "examples"], rows, {2})


def recall_section(recall: dict) -> str:
    """The proposals stage's average recall per ground-truth side: AR@k (IoU 0.5:0.95) and R50@k (IoU 0.5)."""
    keys = [f"{name}@{k}" for name in ("AR", "R50") for k in recall["max_dets"]]
    rows = [[_e(side), _num(recall["images"].get(side))] + [_pct(metrics.get(key)) for key in keys]
            + [_num(metrics.get("num_gt"))] for side, metrics in recall["sides"].items()]
    novel = (f"novel boxes from the held-out file <code>{_e(recall['novel_annotations'])}</code>, read by this "
             "evaluation only" if recall["novel_annotations"] else "no held-out file of novel boxes was given")
    return (f"<p>Class-agnostic average recall of the stored proposals (pycocotools COCOeval, useCats=0), as the "
            f"stage's last run measured it over the images it ran over; split <code>{_e(recall['split'])}</code>, "
            f"{novel}; {_num(recall['proposals_per_image'])} proposals per image.</p>"
            + _table(["ground truth", "images", *keys, "GT boxes"], rows, set(range(1, len(keys) + 3))))


def crops_section(census: dict) -> str:
    """How many crops were the whole image (the region got the image's own embedding) or cut at its border."""
    crop = census["crop"]
    how = f"mode <b>{_e(crop['mode'])}</b>"
    if crop["mode"] == "square":
        cap = crop.get("square_max_area")
        how += (f", capped at {_num(cap)} of the image's area" if cap else
                ", no cap (<code>crop.square_max_area</code>): every box larger than about an eighth of its image "
                "gets the whole image")
    rows = [[_e(source), _num(t["crops"]), _num(t["whole_image"]), _num(t["clipped"])]
            for source, t in census["by_source"].items()]
    if census["pseudo_boxes"] is not None:
        t = census["pseudo_boxes"]
        rows.append(["labelled pseudo boxes", _num(t["crops"]), _num(t["whole_image"]), _num(t["clipped"])])
    return f"<p>{how}</p>" + _table(["regions", "crops", "the whole image", "cut at the border"], rows, {1, 2, 3})


def vocabulary_section(labels: dict) -> str:
    vocabulary = labels["vocabulary"]
    total = max(vocabulary["pseudo_boxes"], 1)
    rows = [[f'<a href="#label-{i}">{_e(r["label"])}</a>' if i < len(labels["examples"]) else _e(r["label"]),
             _num(r["boxes"]), _pct(r["boxes"] / total),
             f'<span class="bar" style="width:{300 * r["boxes"] / total:.0f}px"></span>']
            for i, r in enumerate(vocabulary["top_labels"][:VOCABULARY_ROWS])]
    shown = "all of them" if len(rows) == vocabulary["unique_labels"] else f"the {len(rows)} most frequent"
    return (f"<p>{_num(vocabulary['pseudo_boxes'])} labelled pseudo boxes, {_num(vocabulary['unique_labels'])} "
            f"unique labels ({shown}; every count is in report.json). No object: {_num(vocabulary['no_object'])} "
            f"pseudo boxes whose caption names no object (no label, weight 0).</p>"
            + _table(["label", "boxes", "share", ""], rows, {1, 2}))


def _figure(example: dict) -> str:
    if example["thumb"]:
        picture = (f'<img src="{_e(example["thumb"])}" alt="region {_e(example["region_id"])} of image '
                   f'{_e(example["image_id"])}">')
    else:
        picture = f'<div class="missing">{_e(example["problem"])}</div>'
    covers = ""
    if "covers" in example:
        if example["covers"] is None:
            covers = '<span class="tag none">no GT for this image</span>'
        elif example["covers"]:
            covers = f'<span class="tag ok">covers {_e(example["covers"])} (IoU {example["iou"]:.2f})</span>'
        else:
            covers = f'<span class="tag bad">covers nothing (best IoU {example["iou"]:.2f})</span>'
    return (f"<figure>{picture}<figcaption><b>{_e(example['label'])}</b> cos {example['cos']:.3f} · score "
            f"{example['score']:.2f} {covers}<br>“{_e(example['caption'])}”<br><span class=\"muted\">candidates: "
            f"{_e(', '.join(example['candidates']))}<br>image {_e(example['image_id'])} ({_e(example['file_name'])})"
            f", region {_e(example['region_id'])}</span></figcaption></figure>")


def grids_section(labels: dict) -> str:
    counts = {r["label"]: r["boxes"] for r in labels["vocabulary"]["top_labels"]}
    nothing = {r["label"]: r for r in (labels["quality"] or {}).get("labels_on_nothing") or []}
    parts = [f'<p class="bad">{_e(labels["image_root_problem"])}</p>' if labels["image_root_problem"] else "",
             "<p>A uniform sample of each label's boxes (the same for the same store), highest score first; the box "
             "is drawn in magenta inside some context.</p>"]
    for i, (label, examples) in enumerate(labels["examples"].items()):
        extra = (f" · {nothing[label]['boxes']:,} on nothing ({_pct(nothing[label]['share_of_label'])})"
                 if label in nothing else "")
        parts.append(f'<h3 id="label-{i}">{_e(label)} <span class="muted">{_num(counts.get(label))} boxes{extra}'
                     f'</span></h3><div class="grid">{"".join(_figure(e) for e in examples)}</div>')
    return "".join(parts)


def scores_section(labels: dict) -> str:
    histogram = labels["score_histogram"]
    edges = histogram["edges"]
    centres = [f"{(a + b) / 2:.2f}" for a, b in zip(edges[:-1], edges[1:])]
    return ("<p>score = sigmoid((cos − μ) / σ) · k of every labelled pseudo box (boxes with no object have none)"
            + (", split by what the box covers in the held-out ground truth" if labels["quality"] else "")
            + ".</p>" + stacked_bars("pseudo-label scores", centres, histogram["counts"], "boxes", "score"))


def duplicates_section(labels: dict) -> str:
    vocabulary = labels["vocabulary"]
    groups = [[_e(g["label"]), _num(g["boxes"]), _e(", ".join(g["members"]))]
              for g in vocabulary["near_duplicate_groups"]]
    counts = {r["label"]: r["boxes"] for r in vocabulary["top_labels"]}
    by_base: dict[str, list[str]] = {}
    for label, base in vocabulary["base_synonyms"].items():
        by_base.setdefault(base, []).append(label)
    synonyms = [[_e(base), _num(sum(counts.get(label, 0) for label in labels)), _e(", ".join(sorted(labels)))]
                for base, labels in sorted(by_base.items())]
    return (f"<h3>Near-duplicate labels: {len(groups)} group{'' if len(groups) == 1 else 's'}</h3>"
            + (_table(["group", "boxes", "labels"], groups, {1}) if groups else "<p>None.</p>")
            + f"<h3>Labels that name or are synonyms of base classes: {vocabulary['base_synonym_labels']} labels, "
              f"{_num(vocabulary['base_synonym_boxes'])} boxes</h3>"
            + (_table(["base class", "boxes", "labels"], synonyms, {1}) if synonyms else "<p>None.</p>"))


def quality_section(labels: dict | None) -> str:
    if labels is None:
        return "<p>The store has no pseudo labels yet (<code>make pseudo-labels</code>), so nothing to measure.</p>"
    quality = labels["quality"]
    if not quality:
        return ("<p>No held-out ground truth was given (<code>--heldout-gt</code>), and none was found beside the "
                "store's training annotations.</p>")
    files = "".join(f"<li>{_e(g['role'])}: <code>{_e(g['path'])}</code></li>" for g in quality["ground_truth"])
    iou = quality["iou_threshold"]
    precision = (f"<b>{_pct(quality['precision'])}</b> of {_num(quality['judged_boxes'])} judged pseudo boxes cover "
                 f"an object (base or novel) at IoU ≥ {iou} ({_num(quality['covering_boxes'])} boxes)"
                 if quality["precision"] is not None else
                 '<span class="bad">n/a: no base ground truth (the training annotations), so a box on a base object '
                 "cannot be told from a box on nothing; give <code>--base-gt</code></span>")
    per_class = [[_e(n), _e(c["split"]), _num(c["covering"]), _num(c["correct"]), _pct(c["accuracy"]),
                  _num(c["no_object"])] for n, c in quality["per_class"].items()]
    parts = [f"<p>Ground truth used:</p><ul>{files}</ul><p>Precision: {precision}. Accuracy: "
             f"<b>{_pct(quality['accuracy'])}</b> ({_num(quality['correct'])} of {_num(quality['covering_boxes'])} "
             f"covering boxes are labelled with the class of the object they cover). "
             f"{_num(quality['pseudo_boxes'] - quality['judged_boxes'])} boxes are on images no ground-truth file "
             f"lists and are not judged.</p>"
             + (f"<p>Mean score: {_num(quality['mean_score_covering'])} on the boxes that cover an object, "
                f"{_num(quality['mean_score_on_nothing'])} on the boxes that cover nothing. Score ROC AUC (covering "
                f"against on-nothing labelled boxes): <b>{_num(quality['score_auc'])}</b>; ROC AUC of the training "
                f"weight over every judged box (no object = 0): <b>{_num(quality['weight_auc'])}</b>.</p>"
                if quality["mean_score_on_nothing"] is not None else "")
             + f"<p>No object: {_num(quality['no_object_judged'])} judged pseudo boxes whose caption names no object "
               f"(no label, weight 0); {_num(quality['no_object_covering'])} of them cover an object.</p>",
             "<h3>Accuracy per class</h3>" + _table(["class", "split", "covering boxes", "correct", "accuracy",
                                                      "covering, no object"], per_class, {2, 3, 4, 5})]
    if quality["labels_on_nothing"] is not None:
        nothing = [[_e(r["label"]), _num(r["boxes"]), _num(r["of_label"]), _pct(r["share_of_label"])]
                   for r in quality["labels_on_nothing"]]
        parts.append(f"<h3>Labels of the {_num(quality['boxes_on_nothing'])} boxes that cover nothing</h3>"
                     + _table(["label", "boxes on nothing", "boxes with this label", "share of the label"],
                              nothing, {1, 2, 3}))
    return "".join(parts)


def render_page(report: dict) -> str:
    labels = report.get("labels")
    body = {"stages": stages_section(report), "timings": timings_section(report),
            "failures": failures_section(report)}
    if report.get("proposal_recall"):
        body["recall"] = recall_section(report["proposal_recall"])
    if report.get("crops"):
        body["crops"] = crops_section(report["crops"])
    if labels:
        body.update(vocabulary=vocabulary_section(labels), grids=grids_section(labels), scores=scores_section(labels),
                    duplicates=duplicates_section(labels))
    body["quality"] = quality_section(labels)
    nav = "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title in SECTIONS if key in body)
    sections = "".join(f'<section id="{key}"><h2>{_e(title)}</h2>{body[key]}</section>'
                       for key, title in SECTIONS if key in body)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Feature store report: '
            f'{_e(report["store"])}</title><style>{CSS}</style></head><body><header><h1>Feature store report</h1>'
            f'<p class="muted">store <code>{_e(report["store"])}</code> · generated {_e(report["generated"])}</p>'
            f"<nav>{nav}</nav></header>{summary_cards(report)}{sections}</body></html>\n")
