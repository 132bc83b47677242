"""The quickstart's wall time, this checkout against an earlier commit, side by side.

    python benchmarks/quickstart_time.py [--against REV] [--rounds 3] [--json OUT]

Checks `REV` (any git revision; default ``HEAD~1``) out into a temporary git worktree, then runs
``ebjdat run recipes/quickstart.toml`` alternately from that worktree and from this checkout,
`--rounds` times each (A B A B ..., so that a machine whose speed drifts slows both alike), each
run in a fresh process writing a fresh run directory. Each checkout runs with its own code and
its own `recipes/quickstart.toml` (``PYTHONPATH`` puts the checkout first; the installed
dependencies are this environment's). One untimed run of each first warms the page cache and
trains fd_ref's reference network if it is not cached yet, so neither side pays that.

Prints each side's wall times, their medians, and the ratio new/old pair by pair and of the
medians; with `--json`, writes them. The last new run directory is kept (printed) so that its
three legs can be read: `ebjdat eval RUN --json`. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def timed_run(checkout: Path, run_dir: Path) -> float:
    """Wall seconds of one `ebjdat run recipes/quickstart.toml` from `checkout`, in a new process."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    cmd = [sys.executable, "-m", "ebjdat_tui.cli", "run", "recipes/quickstart.toml",
           "--run-dir", str(run_dir), "--plain"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"quickstart_time: {checkout} failed (exit {done.returncode}):\n{done.stdout[-2000:]}"
                         f"{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="HEAD~1", help="the earlier git revision (default HEAD~1)")
    ap.add_argument("--rounds", type=int, default=3, help="timed runs of each side (default 3)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")  # exit 2
    try:
        old_sha = _git("rev-parse", "--verify", f"{args.against}^{{commit}}")
    except subprocess.CalledProcessError:
        print(f"quickstart_time: {args.against!r} is not a commit of this repository", file=sys.stderr)
        raise SystemExit(2)
    new_sha = _git("rev-parse", "HEAD") + (" + uncommitted changes" if _git("status", "--porcelain", "-uno") else "")
    scratch = Path(tempfile.mkdtemp(prefix="ebjdat-qs-time-"))
    old = scratch / "old"
    _git("worktree", "add", "--detach", str(old), old_sha)
    sides = {"old": old, "new": ROOT}
    times: dict[str, list[float]] = {"old": [], "new": []}
    try:
        for name, checkout in sides.items():  # warm-up: page cache, fd_ref's reference network
            timed_run(checkout, scratch / f"warm-{name}")
        for r in range(args.rounds):
            for name, checkout in sides.items():
                times[name].append(timed_run(checkout, scratch / f"{name}-{r}"))
                print(f"round {r + 1}: {name} {times[name][-1]:.1f} s", flush=True)
    finally:
        _git("worktree", "remove", "--force", str(old))
    ratios = [n / o for n, o in zip(times["new"], times["old"])]
    report = {
        "old": {"commit": old_sha, "seconds": times["old"], "median_s": statistics.median(times["old"])},
        "new": {"commit": new_sha, "seconds": times["new"], "median_s": statistics.median(times["new"])},
        "ratio_new_over_old": {"pairs": ratios,
                               "medians": statistics.median(times["new"]) / statistics.median(times["old"])},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "kept_run": str(scratch / f"new-{args.rounds - 1}"),
    }
    print(f"old {old_sha[:10]}: median {report['old']['median_s']:.1f} s  {[round(t, 1) for t in times['old']]}")
    print(f"new {new_sha[:10]}: median {report['new']['median_s']:.1f} s  {[round(t, 1) for t in times['new']]}")
    print(f"new/old: {report['ratio_new_over_old']['medians']:.2f} (pairs {[round(x, 2) for x in ratios]})")
    print(f"the last new run: {report['kept_run']}  (ebjdat eval RUN --json for its three legs)")
    for path in scratch.iterdir():  # keep the last new run only
        if path.name != f"new-{args.rounds - 1}":
            shutil.rmtree(path, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
