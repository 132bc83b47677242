"""`ebjdat study` and `ebjdat compare` on tiny arms (a few steps each, a few test points).

A study runs every arm × seed as an ordinary run and evaluates each by its one protocol; a
re-run skips finished runs (no new `start`, no new evaluation), resumes stopped ones, and
re-evaluates only what changed; its table is its JSON; a protocol mismatch is flagged.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_RECIPE, ebjdat

from ebjdat_engine.recipe import RecipeError
from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.study import load_study
from ebjdat_engine.study.compare import compare
from ebjdat_engine.study.table import fmt_mean_std, protocol_differences

STUDY = """
[study]
recipe = "tiny.toml"
seeds = [0]
jobs = 2
set = ["train.max_steps={steps}", "monitor.every=0", "monitor.gen_every=0", "eval.every_epochs=0",
       "adversary.eps=0.1", "adversary.step_size=0.025", "adversary.steps=2"]

[protocol]
n = {n}
eps = "0.1"
attacks = "apgd-ce"
n_samples = 40
{curve}

[[arm]]
label = "standard"
set = ["method.name=standard"]

[[arm]]
label = "pgd_at"
set = ["method.name=pgd_at"]
"""


def write_study(folder: Path, steps: int = 4, n: int = 24, curve: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.toml").write_text(TINY_RECIPE.format(out_dir=(folder / "unused").as_posix()))
    path = folder / "tiny_study.toml"
    path.write_text(STUDY.format(steps=steps, n=n, curve=curve))
    return path


def starts(run_dir: Path) -> int:
    return sum(1 for e in read_events(run_dir) if e["type"] == "start")


def restarts_total(run_dir: Path) -> int:
    return next(e["total_steps"] for e in read_events(run_dir) if e["type"] == "start")


def evals(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "eval").glob("*.json"))


@pytest.fixture(scope="module")
def done_study(tmp_path_factory) -> Path:
    """A finished two-arm study (with a two-point robustness curve)."""
    folder = tmp_path_factory.mktemp("study")
    path = write_study(folder, curve='[protocol.curve]\neps = ["0.05", "0.2"]\nattacks = "apgd-ce"\nn = 16')
    proc = ebjdat("study", str(path), "--plain", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path


@pytest.mark.slow
def test_a_study_writes_its_results_tables_and_figures(done_study: Path):
    out = done_study.parent / "tiny_study"
    for name in ("results.json", "results.md", "trilemma.png", "energies.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    doc = json.loads((out / "results.json").read_text())
    assert doc["state"] == "finished"
    assert [a["label"] for a in doc["arms"]] == ["standard", "pgd_at"]
    for arm in doc["arms"]:
        (run,) = arm["runs"]
        assert run["state"] == "done" and run["status"] == "finished" and run["step"] == 4
        run_dir = out / run["run_dir"]
        assert (run_dir / "checkpoints" / "last.pt").is_file()  # an ordinary run directory
        result = json.loads((out / run["eval"]).read_text())
        assert result["options"]["eps"] == "0.1" and result["n"] == 24
        assert run["metrics"]["aa"] == result["aa_acc"] and run["metrics"]["clean"] == result["clean_acc"]
        assert set(run["curve"]) == {"0.05", "0.2"}
        # the curve's budgets are ordered: a larger ball never leaves more points robust
        assert run["curve"]["0.2"]["aa"] <= run["curve"]["0.05"]["aa"]
    # the same recipe plus the arm's override ran: the arms differ in their method only
    recipe = (out / "runs" / "pgd_at-s0" / "recipe.toml").read_text()
    assert 'name = "pgd_at"' in recipe and "max_steps = 4" in recipe


def test_the_table_is_the_json(done_study: Path):
    out = done_study.parent / "tiny_study"
    doc = json.loads((out / "results.json").read_text())
    md = (out / "results.md").read_text()
    for arm in doc["arms"]:
        line = next(row for row in md.splitlines() if row.startswith(f"| `{arm['label']}` | "))
        cells = [c.strip() for c in line.strip("|").split("|")]
        s = arm["summary"]
        assert cells[2] == fmt_mean_std(s["clean"], "acc")
        assert cells[3] == fmt_mean_std(s["pgd"], "acc")
        assert cells[4] == fmt_mean_std(s["aa"], "acc")
        assert cells[5] == fmt_mean_std(s["fd_ref"], "num")
        # and the JSON's summary is the runs' numbers (one seed: the mean is the run's value)
        assert s["aa"]["mean"] == arm["runs"][0]["metrics"]["aa"]
        assert float(cells[4]) == pytest.approx(100 * arm["runs"][0]["metrics"]["aa"], abs=0.05)
    curve = next(row for row in md.splitlines() if row.startswith("| `pgd_at` | ") and "±" not in row
                 and row.count("|") == 4)
    assert curve.split("|")[2].strip() == fmt_mean_std(doc["arms"][1]["curve"]["0.05"], "acc")


@pytest.mark.slow
def test_a_rerun_skips_finished_runs_and_reuses_their_evaluations(done_study: Path):
    out = done_study.parent / "tiny_study"
    run_dir = out / "runs" / "pgd_at-s0"
    before_evals, before_starts = evals(run_dir), starts(run_dir)
    t0 = time.time()
    proc = ebjdat("study", str(done_study), "--plain")
    assert proc.returncode == 0, proc.stderr
    assert "2 already trained" in proc.stdout
    assert starts(run_dir) == before_starts  # not trained again
    assert evals(run_dir) == before_evals    # not evaluated again
    assert time.time() - t0 < 60


@pytest.mark.slow
def test_a_changed_protocol_re_evaluates_without_retraining(tmp_path: Path):
    path = write_study(tmp_path, steps=2, n=12)
    assert ebjdat("study", str(path), "--plain", timeout=600).returncode == 0
    run_dir = tmp_path / "tiny_study" / "runs" / "standard-s0"
    assert len(evals(run_dir)) == 1 and starts(run_dir) == 1
    path.write_text(path.read_text().replace("n = 12", "n = 20"))
    proc = ebjdat("study", str(path), "--plain", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert starts(run_dir) == 1 and len(evals(run_dir)) == 2
    doc = json.loads((tmp_path / "tiny_study" / "results.json").read_text())
    assert json.loads((tmp_path / "tiny_study" / doc["arms"][0]["runs"][0]["eval"]).read_text())["n"] == 20
    # a changed arm trains anew beside the old directory, which is kept
    path.write_text(path.read_text().replace('set = ["method.name=standard"]',
                                             'set = ["method.name=standard", "optim.lr=0.01"]'))
    proc = ebjdat("study", str(path), "--plain", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "tiny_study" / "runs" / "standard-s0.2" / "checkpoints" / "last.pt").is_file()
    assert starts(run_dir) == 1 and len(evals(run_dir)) == 2


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(tmp_path: Path):
    path = write_study(tmp_path, n=12)
    text = path.read_text().replace('"train.max_steps=4"', '"train.epochs=12"')  # ~500 steps
    path.write_text(text.split("[[arm]]\nlabel = \"pgd_at\"")[0])  # the standard arm only
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ebjdat_tui.cli", "study", str(path), "--plain"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = tmp_path / "tiny_study" / "runs" / "standard-s0"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the first run is training past its first checkpoint
        if any(e["type"] == "metrics" and e["step"] >= 20 for e in read_events(first)):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "stopping" in out
    ends = [e for e in read_events(first) if e["type"] == "end"]
    assert [e["status"] for e in ends] == ["stopped"]
    doc = json.loads((tmp_path / "tiny_study" / "results.json").read_text())
    assert doc["state"] == "stopped"
    assert [r["state"] for a in doc["arms"] for r in a["runs"]] == ["stopped"]
    stopped_at = ends[0]["step"]
    assert 20 <= stopped_at < restarts_total(first)

    proc = ebjdat("study", str(path), "--plain", timeout=600)  # the same study again
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = read_events(first)
    restarts = [e for e in events if e["type"] == "start"]
    assert len(restarts) == 2 and restarts[1]["resumed_from"] == stopped_at  # resumed, not restarted
    assert [e["status"] for e in events if e["type"] == "end"] == ["stopped", "finished"]


def test_compare_flags_a_protocol_mismatch(done_study: Path, tmp_path: Path):
    out = done_study.parent / "tiny_study"
    runs = [out / "runs" / "standard-s0", out / "runs" / "pgd_at-s0"]
    agree = compare(runs)
    assert agree["protocols_agree"] and not any(e["mismatch"] for e in agree["entries"])
    # the same run's evaluation at another budget: copied as an evaluation JSON of its own
    result = json.loads(evals(runs[1])[0].read_text())
    result["protocol"]["pgd"]["eps_text"] = "8/255"
    other = tmp_path / "eps8.json"
    other.write_text(json.dumps(result))
    mixed = compare([runs[0], other])
    assert not mixed["protocols_agree"]
    flagged = [e for e in mixed["entries"] if e["mismatch"]]
    assert len(flagged) == 1 and "eps" in flagged[0]["mismatch"]
    proc = ebjdat("compare", str(runs[0]), str(other))
    assert proc.returncode == 0
    assert "MISMATCH" in proc.stdout and "eps 8/255" in proc.stdout
    assert "protocol mismatch" in proc.stderr
    for flag in ("--csv", "--json", "--md"):
        assert ebjdat("compare", str(runs[0]), str(runs[1]), flag).returncode == 0
    assert json.loads(ebjdat("compare", str(runs[0]), str(other), "--json").stdout)["protocols_agree"] is False


def test_compare_numbers_are_the_evaluations(done_study: Path):
    run = done_study.parent / "tiny_study" / "runs" / "pgd_at-s0"
    result = json.loads(evals(run)[0].read_text())
    (entry,) = compare([run])["entries"]
    assert entry["row"]["aa"] == result["aa_acc"] and entry["row"]["clean"] == result["clean_acc"]
    assert entry["row"]["fd_ref"] == result["generation"]["fd_ref"]["fd_ref"]
    assert entry["row"]["train_s"] is not None and entry["row"]["images_per_s"] > 0


def test_compare_bad_input_exits_2(tmp_path: Path):
    proc = ebjdat("compare", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "no such run directory" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = ebjdat("compare", str(tmp_path / "empty"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_eps_is_compared_by_value():
    a = {"checkpoint": "last", "points": 10, "eps": "8/255", "norm": "linf", "attacks": "standard",
         "pgd_steps": 20, "generated": "100 buffer", "seed": 0}
    b = {**a, "eps": repr(8 / 255)}
    assert protocol_differences([a, b]) == [{}, {}]
    c = {**a, "eps": "0.1"}
    assert protocol_differences([a, a, c])[2] == {"eps": ("0.1", "8/255")}


def test_bad_study_files_list_every_error_with_its_path(tmp_path: Path):
    path = write_study(tmp_path)
    text = path.read_text()
    text = text.replace('label = "pgd_at"', 'label = "standard"')           # duplicate label
    text = text.replace('attacks = "apgd-ce"', 'attacks = "apgd-xx"\ncolour = 1')  # bad value, unknown key
    text += '\n[[arm]]\nlabel = "bad"\nset = ["model.widht=3"]\n'          # a recipe error in an arm
    path.write_text(text)
    with pytest.raises(RecipeError) as e:
        load_study(path)
    errors = "\n".join(e.value.errors)
    assert "$.protocol.attacks" in errors and "$.protocol.colour: unknown key" in errors
    assert "the label 'standard' is used more than once" in errors
    proc = ebjdat("study", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error" in proc.stderr and "$.protocol.attacks" in proc.stderr
    text = path.read_text().replace('label = "standard"\nset = ["method.name=pgd_at"]',
                                    'label = "pgd"\nset = ["method.name=pgd_at"]')
    text = text.replace('attacks = "apgd-xx"\ncolour = 1', 'attacks = "apgd-ce"')
    path.write_text(text)
    with pytest.raises(RecipeError) as e:
        load_study(path)
    assert any(re.search(r"\$\.arm\[2\] \(bad\), seed 0: \$\.model\.widht: unknown key", line)
               for line in e.value.errors), e.value.errors
    assert ebjdat("study", str(tmp_path / "missing.toml")).returncode == 2


def test_one_study_process_per_study_directory(tmp_path: Path):
    from ebjdat_engine.study import StudyError, _StudyLock

    study = load_study(write_study(tmp_path))
    with _StudyLock(study.out_dir):
        proc = ebjdat("study", str(study.path), "--plain")
        assert proc.returncode == 2 and f"pid {os.getpid()}" in proc.stderr
        with pytest.raises(StudyError):
            with _StudyLock(study.out_dir):
                pass


def test_readme_result_tables_are_the_shipped_studies_results():
    """The README's study tables are copied from studies/*/results.md (refreshed by
    `python -m ebjdat_engine.study.readme README.md`), never typed by hand."""
    from conftest import REPO

    from ebjdat_engine.study.readme import blocks, tables

    found = blocks((REPO / "README.md").read_text(encoding="utf-8"))
    assert found, "the README has no study-results block"
    for path, body in found:
        shipped = (REPO / path).read_text(encoding="utf-8")
        assert body == tables(shipped), f"README block for {path} differs from the file"
        assert "|---|" in body


def test_readme_tables_extracts_each_table_with_its_caption():
    from ebjdat_engine.study.readme import refresh, tables

    md = ("# T\n\nIntro.\n\nCaption one:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
          "Notes.\n\nCaption two:\n\n| c |\n|---|\n| 3 |\n")
    assert tables(md) == "Caption one:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nCaption two:\n\n| c |\n|---|\n| 3 |\n"
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "r.md").write_text(md)
        (root / "README.md").write_text("x\n<!-- study-results: r.md -->\nstale\n<!-- /study-results -->\ny\n")
        assert refresh(root / "README.md") == ("x\n<!-- study-results: r.md -->\n" + tables(md) +
                                               "<!-- /study-results -->\ny\n")


def test_a_study_directory_that_cannot_be_written_is_a_clear_error():
    from ebjdat_engine.study import StudyError, _StudyLock

    with pytest.raises(StudyError, match="cannot write the study's directory"):
        with _StudyLock(Path("/proc/ebjdat-no-study")):
            pass


def test_an_ebjdat_arm_says_what_differs_from_ebjdats_own_values():
    """results.md's method column: the resolved pieces, plus w2 / w3 / K / noise where they differ
    from EB-JDAT's (1, 1, 5, 0), so two arms that differ only there do not read the same."""
    from ebjdat_engine.study.results import _what

    e = {"profile": "standard", "objective": "energy", "h2": "align", "w_ce": 1.0, "w2": 1.0, "w3": 1.0,
         "noise": 0.0, "steps": 5}
    arm = {"method": "ebjdat", "base": "jem", "ebjdat": e}
    plain = _what(arm)
    assert plain.startswith("ebjdat on jem: ") and "h2 align, w_ce 1" in plain
    assert not any(part in plain for part in ("w2", "w3", "K ", "noise"))
    assert _what({**arm, "ebjdat": {**e, "w3": 2.0}}).endswith("w_ce 1, w3 2")
    assert _what({**arm, "ebjdat": {**e, "w2": 0.5, "steps": 10, "noise": 0.01}}).endswith(
        "w_ce 1, w2 0.5, K 10, noise 0.01")
    assert "w2" not in _what({**arm, "ebjdat": {**e, "h2": "none", "w2": 0.0}})
    assert _what({"method": "pgd_at", "base": None}) == "pgd_at"
