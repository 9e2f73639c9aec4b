"""`python -m shapesov.teachers --data data/shapes --out data/teachers`: make the CLIP and ClipCap teachers exist
(reuse, copy the committed ones, or train), write MANIFEST.json, then the teacher report."""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from shapesov.teachers.build import ensure_teachers
from shapesov.teachers.config import TeachersConfig
from shapesov.teachers.manifest import MANIFEST_FILE
from shapesov.teachers.report import REPORT_FILE, write_report
from schemas.config import add_config_arguments, load_config, to_dict

DEFAULT_ASSETS = Path("assets/teachers")


def publish(out: Path, manifest: dict, assets: Path) -> None:
    """Copy the teachers, their manifest and report to `assets` (the directory committed to the repository)."""
    files = [rel for entry in manifest["teachers"].values() for rel in entry["files"]]
    for rel in files + [MANIFEST_FILE, REPORT_FILE]:
        if (out / rel).is_file():
            (assets / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / rel, assets / rel)
    print(f"published {len(files)} teacher files to {assets}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shapesov.teachers", description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/shapes"), help="generated ShapesOV (for the report)")
    parser.add_argument("--out", type=Path, default=Path("data/teachers"), help="teachers directory to fill")
    parser.add_argument("--assets", type=Path, default=DEFAULT_ASSETS,
                        help="committed teachers to copy when their sha256 and config match")
    parser.add_argument("--retrain", action="store_true", help="train even when verified teachers exist")
    parser.add_argument("--publish", action="store_true", help="afterwards copy the teachers to --assets")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    cfg = load_config(TeachersConfig, args.config, args.overrides)
    print(json.dumps(to_dict(cfg), indent=1))
    start = time.perf_counter()
    manifest = ensure_teachers(cfg, args.out, args.assets if args.assets.is_dir() else None, args.retrain)
    print(f"teachers ready in {args.out} after {time.perf_counter() - start:.1f}s")
    if (args.data / "annotations" / "val.json").is_file():
        write_report(args.out, args.data, cfg.eval, args.out / REPORT_FILE)
    else:
        print(f"no ShapesOV val split under {args.data}: report skipped (run `make sample`, flag --data)")
    if args.publish:
        publish(args.out, manifest, args.assets)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
