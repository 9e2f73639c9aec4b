"""`show STORE --image-id N -o out.png`: one image with its boxes, captions and pseudo labels (like HD-OVD Fig. 5).

Pseudo boxes with a label are blue, GT boxes green, pseudo boxes the pseudo-labels stage could not label red; the
panel under the image lists each region's caption, candidates, label and score.
"""
from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from featurestore.commands.store_images import image_root, open_image
from featurestore.commands.render import add_out_argument
from featurestore.reader import StoreReader
from featurestore.stages import PSEUDO_LABELS

MIN_SIDE = 512  # small images (ShapesOV: 128-256 px) are upscaled so the text stays legible
LINE_HEIGHT = 14
COLOURS = {"gt": (40, 200, 80), "labelled": (40, 110, 255), "no_object": (150, 150, 150), "failed": (230, 50, 50)}


def add_arguments(parser) -> None:
    parser.add_argument("store", help="the store: the folder holding manifest.json, or its URL (s3://…, gs://…)")
    parser.add_argument("--image-id", type=int, required=True)
    add_out_argument(parser, "PNG file to write")
    parser.add_argument("--image-root", default=None, help="image folder (default: the one extract-features read)")


def region_lines(tables: dict) -> tuple[list[tuple[list[float], str, tuple]], list[str]]:
    """(box, tag, colour) per drawn region and the text lines of the panel."""
    labels = {r["region_id"]: r for r in tables["pseudo_labels"].to_pylist()} if "pseudo_labels" in tables else {}
    failed = {f["region_id"]: f for f in tables["failures"].to_pylist()
              if f["stage"] == PSEUDO_LABELS} if "failures" in tables else {}
    drawn, lines = [], []
    for region in tables.get("regions").to_pylist() if "regions" in tables else []:
        rid = region["region_id"]
        if region["source"] == "gt":
            drawn.append((region["box"], f"{rid} gt {region['category_id']}", COLOURS["gt"]))
        elif rid in labels and labels[rid]["label"] is None:
            row = labels[rid]
            drawn.append((region["box"], f"{rid} no object", COLOURS["no_object"]))
            lines.append(f"#{rid} no object (weight 0) <- \"{row['caption']}\"")
        elif rid in labels:
            row = labels[rid]
            drawn.append((region["box"], f"{rid} {row['label']} {row['score']:.2f}", COLOURS["labelled"]))
            lines.append(f"#{rid} {row['label']} (cos {row['cos']:.3f}, score {row['score']:.2f}) <- "
                         f"\"{row['caption']}\" [{', '.join(row['candidates'])}]")
        elif rid in failed:
            drawn.append((region["box"], f"{rid} {failed[rid]['kind']}", COLOURS["failed"]))
            lines.append(f"#{rid} no label: {failed[rid]['message']}")
    return drawn, lines


def render(image: Image.Image, drawn, lines: list[str]) -> Image.Image:
    scale = max(1.0, MIN_SIDE / min(image.size))
    big = image.resize((round(image.width * scale), round(image.height * scale)), Image.NEAREST)
    canvas = Image.new("RGB", (big.width, big.height + LINE_HEIGHT * (len(lines) + 1)), "white")
    canvas.paste(big, (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for box, tag, colour in drawn:
        x0, y0, x1, y1 = (v * scale for v in box)
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=2)
        draw.text((x0 + 3, y0 + 2), tag, fill=colour, font=font)
    for i, line in enumerate(lines):
        draw.text((4, big.height + 4 + i * LINE_HEIGHT), line, fill="black", font=font)
    return canvas


def run(args) -> int:
    reader = StoreReader(args.store)
    tables = reader.find_image(args.image_id, ("images", "regions", "pseudo_labels", "failures"))
    if "images" not in tables:
        raise KeyError(f"image id {args.image_id} has no row in the images table of {args.store}")
    file_name = tables["images"].column("file_name")[0].as_py()
    image = open_image(image_root(reader, args.image_root), file_name)
    drawn, lines = region_lines(tables)
    render(image, drawn, lines).save(args.out)
    print(f"wrote {args.out}: image {args.image_id} ({file_name}), {len(drawn)} boxes, {len(lines)} labelled or "
          f"failed pseudo boxes")
    return 0
