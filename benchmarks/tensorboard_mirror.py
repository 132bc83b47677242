"""What the live TensorBoard mirror (`runtime.tensorboard = true`) costs the training job.

    python benchmarks/tensorboard_mirror.py [--events 20000] [--steps 200] [--repeats 2] [--json OUT]

1. The listener's own cost, the only part on the training thread: `LiveMirror.__call__` for
   `--events` recorded metrics / energy events (a queue put each), against a no-op listener.
   Also how long the background thread then takes to write them all (off the training thread).
2. End to end: `recipes/quickstart.toml` for `--steps` steps with the mirror off and on,
   alternating `--repeats` times; the wall time of the fit and the median images/s of its
   metrics events. On a loaded machine the second number is noisy; the first is not.
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def listener_cost(n_events: int) -> dict[str, float]:
    from ebjdat_engine.export.tensorboard import LiveMirror

    metrics = {"type": "metrics", "time": 0.0, "epoch": 1.0, "loss": 1.5, "loss_avg": 1.6, "acc": 0.5,
               "terms": {"h1_px": 0.1, "ce": 1.0, "h2_adv": 0.2}, "lr": 0.1, "images_per_s": 500.0}
    energy = {"type": "energy", "time": 0.0, "epoch": 1.0, "range": [-20.0, 10.0], "bins": 40,
              "populations": {p: {"n": 640, "mean": -1.0, "std": 1.0, "quantiles": {"q50": -1.0},
                                  "hist": [0] * 10 + [64] * 10 + [0] * 20}
                              for p in ("clean", "adversarial", "generated")},
              "gaps": {"clean_minus_generated": 0.1}}
    events = [{**(energy if i % 5 == 0 else metrics), "step": i} for i in range(n_events)]
    with tempfile.TemporaryDirectory() as tmp:
        mirror = LiveMirror(tmp, Path(tmp) / "tb", max_pending=n_events + 1)
        t0 = time.perf_counter()
        for e in events:
            mirror(e)
        call = time.perf_counter() - t0
        t1 = time.perf_counter()
        mirror.close(timeout=600)
        drain = time.perf_counter() - t1
    noop = lambda e: None  # noqa: E731
    t0 = time.perf_counter()
    for e in events:
        noop(e)
    base = time.perf_counter() - t0
    return {"events": n_events, "call_us": call / n_events * 1e6, "noop_us": base / n_events * 1e6,
            "background_write_s": drain + call, "dropped": mirror.dropped}


def end_to_end(steps: int, repeats: int) -> list[dict[str, float]]:
    import torch

    from ebjdat_engine.recipe import resolve
    from ebjdat_engine.rundir.events import read_events
    from ebjdat_engine.train.session import run

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for on in (False, True):
                sets = [f"train.max_steps={steps}", f"runtime.tensorboard={'true' if on else 'false'}",
                        f'run.out_dir="{tmp}"', f'run.name="r{r}-{int(on)}"', "runtime.threads=1"]
                recipe = resolve(REPO / "recipes" / "quickstart.toml", sets)
                t0 = time.perf_counter()
                result = run(recipe, None)
                wall = time.perf_counter() - t0
                ips = [e["images_per_s"] for e in read_events(result.run_dir) if e["type"] == "metrics"]
                rows.append({"tensorboard": on, "wall_s": wall, "images_per_s": statistics.median(ips)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cost = listener_cost(args.events)
    print(f"listener: {cost['call_us']:.1f} us per event on the training thread (no-op listener "
          f"{cost['noop_us']:.2f} us); the background thread wrote {cost['events']} events in "
          f"{cost['background_write_s']:.1f} s; dropped {cost['dropped']}")
    rows = end_to_end(args.steps, args.repeats) if args.steps else []
    for row in rows:
        print(f"quickstart {args.steps} steps, tensorboard {'on ' if row['tensorboard'] else 'off'}: "
              f"fit {row['wall_s']:.1f} s, median {row['images_per_s']:.0f} images/s")
    if args.json:
        args.json.write_text(json.dumps({"listener": cost, "end_to_end": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
