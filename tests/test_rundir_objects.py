"""RunDir and StudyDir own every file name of a run and a study directory, and the one "is this
a run" rule; nothing outside ebjdat_engine/rundir/ spells a file name."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ebjdat_engine.rundir import (
    CHECKPOINT_DIR,
    EVENTS_FILE,
    META_FILE,
    NO_RUN_MARKERS,
    RECIPE_FILE,
    RESULTS_FILE,
    STUDY_LOCK_FILE,
    EventTail,
    RunDir,
    StudyDir,
    is_run_dir,
)
from ebjdat_engine.rundir.events import EventWriter

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("ebjdat_engine", "ebjdat_tui", "benchmarks")
#: the on-disk names only rundir/ may spell (a longer name that merely ends in one, such as
#: benchmarks/gpu_table.py's "bench-results.json", is another file and does not count)
NAMES = re.compile(r"(?<![\w.-])(events\.jsonl|last\.pt|meta\.json|results\.json|study\.lock)(?![\w])")
#: spellings that cannot go through rundir, with the reason; the count must match exactly (none)
ALLOWED: dict[tuple[str, str], int] = {}


def _hits() -> Counter:
    hits: Counter = Counter()
    for top in SOURCES:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith("ebjdat_engine/rundir/"):
                continue
            for match in NAMES.finditer(path.read_text(encoding="utf-8")):
                hits[(rel, match.group(1))] += 1
    return hits


def test_no_source_outside_rundir_spells_a_run_or_study_file_name():
    hits = _hits()
    unexpected = {k: n for k, n in hits.items() if ALLOWED.get(k) != n}
    assert not unexpected, f"spell these through ebjdat_engine.rundir (RunDir, StudyDir, the constants): {unexpected}"
    stale = {k: n for k, n in ALLOWED.items() if hits.get(k) != n}
    assert not stale, f"allow-list entries that no longer match: {stale}"


def test_recipe_docs_name_the_rundir_files():
    from ebjdat_engine.recipe.fields import doc_of
    from ebjdat_engine.recipe.schema import ModelConfig, TrainConfig

    assert "(its last checkpoint)" in doc_of(ModelConfig, "init_from")
    assert f"{CHECKPOINT_DIR}/epoch_<n>.pt" in doc_of(TrainConfig, "ckpt_every")


def test_run_dir_names(tmp_path: Path):
    run = RunDir(tmp_path / "r")
    assert run.path == tmp_path / "r" and run.name == "r"
    assert run.events == tmp_path / "r" / "events.jsonl"
    assert run.meta == tmp_path / "r" / "meta.json"
    assert run.recipe == tmp_path / "r" / "recipe.toml"
    assert run.lock == tmp_path / "r" / ".lock"
    assert run.stdout_log == tmp_path / "r" / "stdout.log"
    assert run.checkpoints == tmp_path / "r" / "checkpoints"
    assert run.last_checkpoint == tmp_path / "r" / "checkpoints" / "last.pt"
    assert run.best_checkpoint == tmp_path / "r" / "checkpoints" / "best.pt"
    assert run.checkpoint("collapsed") == tmp_path / "r" / "checkpoints" / "collapsed.pt"
    assert run.samples == tmp_path / "r" / "samples" and run.eval_dir == tmp_path / "r" / "eval"
    assert run.control == tmp_path / "r" / "control"
    assert Path(run) == run.path and RunDir(str(run.path)) == run and len({run, RunDir(run.path)}) == 1
    assert NO_RUN_MARKERS == "no events.jsonl, meta.json or recipe.toml"


def test_study_dir_names(tmp_path: Path):
    study = StudyDir(tmp_path)
    assert study.results == tmp_path / "results.json" and study.results_md == tmp_path / "results.md"
    assert study.lock == tmp_path / "study.lock"
    assert study.runs == tmp_path / "runs" and study.logs == tmp_path / "logs"
    assert study.run("a-s0") == RunDir(tmp_path / "runs" / "a-s0")
    assert StudyDir.of_results(study.results) == study
    assert (RESULTS_FILE, STUDY_LOCK_FILE) == ("results.json", "study.lock")


@pytest.mark.parametrize("files, expected", [
    ((), False),
    (("stdout.log",), False),          # a launcher's folder before the job wrote anything
    (("results.json",), False),        # a study
    ((EVENTS_FILE,), True),
    ((META_FILE,), True),              # the job has started, no event yet
    ((RECIPE_FILE,), True),
    ((RECIPE_FILE, META_FILE, EVENTS_FILE), True),
])
def test_the_one_is_a_run_rule(tmp_path: Path, files, expected):
    run = tmp_path / "r"
    run.mkdir()
    for name in files:
        (run / name).write_text("")
    assert RunDir(run).is_run() is expected and is_run_dir(run) is expected


def test_a_missing_path_or_a_file_is_not_a_run(tmp_path: Path):
    assert not RunDir(tmp_path / "nope").is_run()
    (tmp_path / "f").write_text("x")
    assert not is_run_dir(tmp_path / "f")


def test_run_dir_tail_and_events(tmp_path: Path):
    run = RunDir(tmp_path)
    tail = run.tail()
    assert isinstance(tail, EventTail) and tail.poll() == [] and not run.has_events()
    w = EventWriter(tmp_path)
    w.emit("start", 0, 0.0, total_steps=5)
    assert [e["type"] for e in tail.poll()] == ["start"] and run.has_events()
    with open(run.events, "a", encoding="utf-8") as f:
        f.write('{"type":"metrics","step":1')  # half a line: kept back
    assert tail.poll() == []
    with open(run.events, "a", encoding="utf-8") as f:
        f.write(',"time":1,"epoch":0}\n')
    assert [e["step"] for e in tail.poll()] == [1]
    w.close()
    assert [e["type"] for e in run.read_events()] == ["start", "metrics"]


def test_importing_rundir_does_not_import_torch():
    code = "import sys, ebjdat_engine.rundir as r; r.RunDir('.').tail(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
