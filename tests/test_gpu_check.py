"""benchmarks/gpu_check.py: its dry run writes every result file the GPU run writes, and what it
carries is what the GPU image lacks (the prepare step downloads; here only its choices are checked)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402


@pytest.mark.slow
def test_the_dry_run_writes_the_gpu_runs_files(tmp_path: Path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["dry_run"]
    assert set(summary["steps"]) == {"environment", "gpu_tests", "bench", "train", "data_stream"}
    assert "skipped" in summary["steps"]["gpu_tests"]["result"]          # no CUDA here: the tests skip
    reports = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
    assert {r["label"] for r in reports} == {"ebjdat-jempp", "sadajem", "pgd_at"}
    assert any(r["compiled"] for r in reports) and all(r["images_per_s"] > 0 for r in reports)
    assert (out / "gpu_table.md").read_text().count("\n| cpu |") == len(reports)
    for label in ("ebjdat", "pgd_at"):
        train = summary["steps"]["train"][label]
        assert (train["first_exit"], train["resume_exit"], train["eval_exit"]) == (0, 0, 0)
        assert (out / "train" / f"{label}_eval.json").is_file() and (out / "train" / f"{label}_samples.png").is_file()
        starts = [json.loads(line) for line in (out / "train" / label / "events.jsonl").read_text().splitlines()
                  if '"type":"start"' in line]
        assert starts[-1]["resumed_from"] is not None                   # stopped once and resumed
    assert json.loads((out / "data_stream.json").read_text())


def test_it_carries_what_the_gpu_image_lacks_and_slims_the_big_wheel(tmp_path: Path):
    carried = gpu_check.carried_requirements()
    assert {"textual", "cattrs", "tomli-w", "pyautoattack", "torch-fidelity", "submitit"} <= set(carried)
    assert not set(carried) & gpu_check.GPU_HAS                       # nothing the image has already
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/__init__.py", "")
        z.writestr("pkg/examples/model.pt", b"x" * 1000)
        z.writestr("pkg-1.0.dist-info/RECORD", "pkg/__init__.py,,\npkg/examples/model.pt,,\n")
    gpu_check.slim_wheel(wheel, ("pkg/examples/",))
    with zipfile.ZipFile(wheel) as z:
        assert z.namelist() == ["pkg/__init__.py", "pkg-1.0.dist-info/RECORD"]
        assert b"examples" not in z.read("pkg-1.0.dist-info/RECORD")
