"""SIGKILL soak: kill a checkpointing run at random moments, resume it each time (not a test).

    python benchmarks/sigkill_soak.py [--kills 20] [--seed 0] [--recipe recipes/quickstart.toml]

Starts the recipe with a checkpoint every epoch of a tiny epoch (`train.batch_size` large,
`data.n_train` small: a save every few hundred ms), SIGKILLs it after a random 5–12 s (startup, then steps and
saves), then
`ebjdat run --resume` on the same directory with a fresh random kill, `--kills` times, and a
last resume that runs 20 more steps to the end. Checks after every kill: the resume is accepted (exit 0 or
killed again, never exit 1 or 2), the last checkpoint loads, the lock was freed by the
kernel, and no hidden temp file outlives the next successful save. Prints one line per kill and
a verdict; exit 1 if any check failed.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ebjdat_engine.rundir import LAST_CHECKPOINT, RunDir
from ebjdat_engine.rundir.checkpoint import TRAINING_KEYS, load_checkpoint
from ebjdat_engine.rundir.events import read_events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/quickstart.toml")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    out = Path(tempfile.mkdtemp(prefix="ebjdat-soak-")) / "run"
    sets = ["--set", "data.n_train=256", "--set", "train.batch_size=64", "--set", "train.epochs=400",
            "--set", "monitor.gen_every=0", "--set", "monitor.samples_every=0", "--set", "eval.every_epochs=0"]
    base = [sys.executable, "-m", "ebjdat_tui.cli", "run", "--plain"]
    failures = []
    for k in range(args.kills + 1):
        cmd = base + [args.recipe, "--run-dir", str(out), *sets] if k == 0 else base + ["--resume", str(out)]
        if k == args.kills:  # the last resume: 20 more steps, to the end
            at = int(load_checkpoint(RunDir(out).last_checkpoint)["step"])
            cmd += ["--set", f"train.max_steps={at + 20}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if k < args.kills:
            delay = rng.uniform(5.0, 12.0)  # the job starts in ~5 s on a 2-core CPU
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            _out, err = proc.communicate()
        else:  # the last one runs to the end
            _out, err = proc.communicate()
            delay = None
        code = proc.returncode
        problems = []
        if code not in (0, -signal.SIGKILL):
            problems.append(f"exit {code}: {err.strip().splitlines()[-1] if err.strip() else ''}")
        last = RunDir(out).last_checkpoint
        step = None
        if last.exists():
            try:
                step = int(load_checkpoint(last, required=TRAINING_KEYS)["step"])
            except Exception as e:  # noqa: BLE001 - a soak reports every failure
                problems.append(f"{LAST_CHECKPOINT} does not load: {e}")
        elif k > 0:
            problems.append(f"no {LAST_CHECKPOINT}")
        temps = sorted(p.name for p in RunDir(out).checkpoints.glob(".*.tmp"))
        # a temp file may be the killed save's own; it must not outlive the next writer's start
        stale = [t for t in temps if t in getattr(main, "_seen", set())]
        main._seen = set(temps)  # type: ignore[attr-defined]
        if stale:
            problems.append(f"temp files outlived a successful save: {stale}")
        when = f"killed after {delay:.2f} s" if delay is not None and code == -signal.SIGKILL else f"exit {code}"
        print(f"{k:>2}: {when:<22} {LAST_CHECKPOINT} step {step}  temp files {len(temps)}"
              + (f"  PROBLEM: {'; '.join(problems)}" if problems else ""))
        failures += problems
    events = read_events(out)
    starts = sum(e["type"] == "start" for e in events)
    end = events[-1] if events else {}
    print(f"{starts} starts, last event {end.get('type')} {end.get('status')} at step {end.get('step')}")
    if end.get("status") != "finished":
        failures.append("the last resume did not finish")
    print("verdict: " + ("every resume succeeded" if not failures else f"{len(failures)} problem(s)"))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
