"""The README's generation figure: a run's samples between its init distribution and real data.

    python benchmarks/generation_figure.py RUN [--out docs/quickstart_generation.png] [--ckpt best]

Three 8x8 grids of 64 images side by side, each titled with its fd_ref from the run's latest
`ebjdat eval` JSON: fresh draws of the sampler's init distribution (what "no learning" gives),
the run's replay buffer (what `ebjdat eval` scores), and held-out test images (the floor). The
images are the ones `ebjdat eval` uses (same seed 0), so the picture and the numbers agree.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/quickstart_generation.png"))
    parser.add_argument("--ckpt", default="best")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ebjdat_engine.data import load_dataset
    from ebjdat_engine.eval.generation import draw_buffer, init_baseline
    from ebjdat_engine.eval.loading import load_run

    device = torch.device("cpu")
    run = load_run(args.run, args.ckpt, device)
    splits = load_dataset(run.recipe.data, device, run.recipe.run.seed)
    evals = sorted((args.run / "eval").glob("*.json"))
    if not evals:
        raise SystemExit(f"{args.run}: no eval/*.json; run `ebjdat eval {args.run}` first")
    fd = json.loads(evals[-1].read_text())["generation"]["fd_ref"]
    x_init, _ = init_baseline(run, 64, device, seed=0, splits=splits)
    x_gen, _ = draw_buffer(run, 64, seed=0)
    x_real = splits.test.images[:64].float().div(255.0)
    panels = [(x_init, f"{fd['init_baseline'].get('init', 'init')} init draws\n"
                       f"fd_ref {fd['init_baseline']['fd_ref']:.2f}"),
              (x_gen, f"{run.recipe.method.name} replay buffer (step {run.step})\nfd_ref {fd['fd_ref']:.2f}"),
              (x_real, f"held-out test images (floor)\nfd_ref {fd['floor']['fd_ref']:.2f}")]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4), dpi=110)
    for ax, (x, title) in zip(axes, panels):
        x = torch.nn.functional.pad(x[:64].clamp(0, 1), (0, 1, 0, 1), value=1.0)  # white gaps
        n, c, h, w = x.shape
        grid = x.view(8, 8, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, 8 * h, 8 * w)[:, :-1, :-1]
        ax.imshow(grid[0] if c == 1 else grid.permute(1, 2, 0), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{run.recipe.data.name}: fd_ref against the train split (lower is closer to real data)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
