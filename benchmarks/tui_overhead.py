"""Training throughput headless vs with the TUI attached (a benchmark, not a test).

    python benchmarks/tui_overhead.py [--steps 400] [--recipe recipes/quickstart.toml]

Runs the recipe twice for the same number of steps: once with `ebjdat run` (headless), once
started by `ebjdat tui` inside a detached 100x30 tmux session (the TUI watching the whole time).
Prints the mean images/s of both from their own `metrics` events (first window skipped) and the
ratio. Needs tmux.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ebjdat_engine.rundir import RunDir
from ebjdat_engine.rundir.events import read_events


def throughput(run_dir: Path) -> float:
    rates = [e["images_per_s"] for e in read_events(run_dir)
             if e["type"] == "metrics" and e.get("images_per_s")][1:]
    return statistics.mean(rates)


def wait_end(run_dir: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        events = read_events(run_dir)
        if events and events[-1]["type"] == "end":
            return
        time.sleep(1)
    raise TimeoutError(f"{run_dir} did not end in {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/quickstart.toml")
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("needs tmux")
    out = Path(tempfile.mkdtemp(prefix="tui-overhead-"))
    sets = ["--set", f"train.max_steps={args.steps}", "--set", f'run.out_dir="{out}"']
    subprocess.run([sys.executable, "-m", "ebjdat_tui.cli", "run", args.recipe, *sets,
                    "--set", 'run.name="headless"', "--plain"], check=True, stdout=subprocess.DEVNULL)
    cmd = shlex.join([sys.executable, "-m", "ebjdat_tui.cli", "tui", args.recipe, *sets,
                      "--set", 'run.name="tui"'])
    subprocess.run(["tmux", "new", "-d", "-s", "ebjdat-bench", "-x", "100", "-y", "30", cmd], check=True)
    try:
        while not RunDir(out / "tui").events.exists():
            time.sleep(0.5)
        wait_end(out / "tui", 3600)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", "ebjdat-bench"], check=False)
    headless, tui = throughput(out / "headless"), throughput(out / "tui")
    print(f"headless {headless:.1f} images/s, with the TUI attached {tui:.1f} images/s, "
          f"ratio {tui / headless:.3f} ({args.steps} steps of {args.recipe}; runs in {out})")


if __name__ == "__main__":
    main()
