"""The README's GPU table: `ebjdat bench` of a recipe at several batch sizes, eager and compiled.

    python benchmarks/gpu_table.py recipes/cifar10.toml --batch 32 64 128 --steps 10

Prints a markdown table (device, torch version and date in the header) and writes the raw
reports as JSON next to it (--out). Needs a GPU to mean anything; runs anywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import torch

from ebjdat_engine.recipe import resolve
from ebjdat_engine.train.bench import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument("--set", action="append", default=[], dest="sets")
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"))
    args = parser.parse_args()
    rows, reports = [], []
    for compiled in ([False] if args.no_compile else [False, True]):
        for batch in args.batch:
            sets = [*args.sets, f"train.batch_size={batch}", f"runtime.compile={str(compiled).lower()}"]
            report = bench(resolve(args.recipe, sets), steps=args.steps, warmup=args.warmup)
            reports.append(report)
            mfu = f"{report['mfu'] * 100:.1f} %" if report["mfu"] else "n/a"
            rows.append(f"| {batch} | {'compiled' if compiled else 'eager'} | {report['images_per_s']:.0f} | "
                        f"{report['flops_per_image_F']:.1f} | {report['achieved_flops_per_s'] / 1e12:.1f} | {mfu} |")
    device = reports[0]["device_name"] if reports else "?"
    print(f"`{args.recipe}` on {device}, torch {torch.__version__}, {dt.date.today().isoformat()}\n")
    print("| batch | mode | images/s | F per image | TFLOP/s | MFU |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    args.out.write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
