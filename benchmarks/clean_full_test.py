"""Clean accuracy of every run of a study on the whole test split, beside the study's own number.

    python benchmarks/clean_full_test.py studies/<name> [--threads 1]

A study's protocol scores the first `protocol.n` test images (200 in the shipped studies), which
reads a point or two high or low on a dataset of 10,000. This script loads each evaluated run with
the public `ebjdat_engine.load_classifier` (the checkpoint the protocol names), scores every test
image of the run's own dataset (from its recipe.toml), and prints both numbers per run, so a
reader can see whether a claim made on the protocol's points (e.g. "standard training ≥ 88 %")
holds on the full test set. Exit status: 0, or 2 for bad input (no study, no results).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aa_crosscheck import BadInput, checkpoint_file, read_study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="study directory (holds the study's results)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    try:
        protocol, runs = read_study(args.study, None)
    except BadInput as e:
        print(f"clean_full_test: {e}", file=sys.stderr)
        return 2
    import json

    import torch

    from ebjdat_engine import load_classifier
    from ebjdat_engine.data import load_dataset
    from ebjdat_engine.recipe import from_toml_text
    from ebjdat_engine.rundir import RunDir

    torch.set_num_threads(args.threads)
    n_protocol = int(protocol.get("n") or 0)
    print(f"{'run':16s} {'protocol (first ' + str(n_protocol) + ')':>22s} {'all test images':>16s}")
    for run in runs:
        run_dir = Path(run["run_dir"])
        recipe = from_toml_text(RunDir(run_dir).recipe.read_text())
        test = load_dataset(recipe.data, torch.device("cpu"), recipe.run.seed).test
        model = load_classifier(checkpoint_file(run_dir, protocol.get("ckpt", "last")))
        x, y = test.images, test.labels
        correct = 0
        with torch.no_grad():
            for i in range(0, len(y), 1000):
                correct += (model(x[i:i + 1000].float() / 255).argmax(1) == y[i:i + 1000]).sum().item()
        metrics = json.loads(Path(args.study, run["eval"]).read_text()) if run.get("eval") else {}
        study_clean = metrics.get("clean_acc")
        shown = f"{100 * study_clean:.1f} %" if isinstance(study_clean, float) else "—"
        print(f"{run['label']:16s} {shown:>22s} {100 * correct / len(y):>13.1f} % of {len(y)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
