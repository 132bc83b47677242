"""benchmarks/quickstart_time.py: the side-by-side timing refuses what it cannot compare, and
leaves no worktree behind (its runs themselves take minutes: a benchmark, not a test)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/quickstart_time.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_an_unknown_revision_is_a_clear_error_with_exit_2() -> None:
    before = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
    proc = _run("--against", "no-such-revision-anywhere")
    assert proc.returncode == 2
    assert "'no-such-revision-anywhere' is not a commit of this repository" in proc.stderr
    assert "Traceback" not in proc.stderr
    after = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
    assert after == before


def test_rounds_must_be_positive() -> None:
    proc = _run("--rounds", "0")
    assert proc.returncode == 2 and "--rounds must be >= 1" in proc.stderr
