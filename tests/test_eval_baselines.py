"""Generation beside its baselines: every generation metric of `ebjdat eval` (fd_ref, FID/KID)
stands beside its floor (held-out test images) and its init baseline (the sampler's init
distribution), in the JSON, the `eval` event, the text output and the TUI's eval panel."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import ebjdat, write_tiny_recipe
from tui_helpers import append, copy_run, run_app, screen_text, wait_for

from ebjdat_engine.data import load_dataset
from ebjdat_engine.eval import fid as fid_module
from ebjdat_engine.eval.evaluate import evaluate
from ebjdat_engine.eval.generation import init_baseline, init_distribution
from ebjdat_engine.recipe import DataConfig, resolve
from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.train.session import run
from ebjdat_tui.widgets.eval_history import history_lines
from ebjdat_tui.widgets.eval_table import eval_lines, eval_rows

torch.set_num_threads(1)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(name="digits"), CPU, 0)


@pytest.fixture(scope="module")
def jem_run(tmp_path_factory) -> Path:
    """A digits JEM run (uniform init, replay buffer), one short epoch."""
    tmp = tmp_path_factory.mktemp("baselines")
    recipe_path = write_tiny_recipe(tmp)
    recipe = resolve(recipe_path, ["method.name=jem", "method.l2_energy=0.1", "train.epochs=1",
                                   "sampler.n_steps=5", "sampler.buffer_size=512",
                                   "train.px_batch_size=32", "monitor.every=0"])
    result = run(recipe, str(recipe_path))
    assert result.status == "finished"
    return result.run_dir


# --- the init baseline's draws ----------------------------------------------------------------

def _stub_run(recipe_path: Path, method: str, buffer_init: str, with_buffer: bool):
    """What `init_baseline` reads of a loaded run: the recipe and the checkpoint's header."""
    recipe = resolve(recipe_path, [f"method.name={method}", f"sampler.buffer_init={buffer_init}"])
    method_state = {"sampler": {"buffer": {"buffer": torch.zeros(1, 1, 8, 8)}}} if with_buffer else {}
    return SimpleNamespace(recipe=recipe, checkpoint={"n_classes": 10, "image_shape": [1, 8, 8],
                                                      "method": method_state})


@pytest.mark.parametrize("method, buffer_init, with_buffer, init, source", [
    ("jem", "uniform", True, "uniform", "uniform draws (the sampler's init)"),
    ("jempp", "class_gaussian", True, "class_gaussian", "class_gaussian draws (the sampler's init)"),
    ("jem", "data_noise", True, "data_noise", "data_noise draws (the sampler's init)"),
    ("standard", "class_gaussian", False, "class_gaussian",
     "class_gaussian draws (the init of the fresh chains; standard trains no sampler)"),
    ("dat", "class_gaussian", False, "uniform", "uniform draws (DAT's negatives start from uniform noise)"),
])
def test_init_baseline_draws_the_runs_init_reproducibly(tiny_recipe, digits, method, buffer_init,
                                                        with_buffer, init, source):
    stub = _stub_run(tiny_recipe, method, buffer_init, with_buffer)
    assert init_distribution(stub) == init
    rng = torch.get_rng_state()
    x, info = init_baseline(stub, 200, CPU, seed=5, splits=digits)
    assert torch.equal(torch.get_rng_state(), rng)  # a private generator: the eval's RNG is untouched
    assert info == {"source": source, "init": init, "n": 200, "seed": 5}
    assert x.shape == (200, 1, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    again, _ = init_baseline(stub, 200, CPU, seed=5, splits=digits)
    other, _ = init_baseline(stub, 200, CPU, seed=6, splits=digits)
    assert torch.equal(x, again) and not torch.equal(x, other)
    real_mean = digits.train.images.float().div(255).mean()
    if init == "uniform":
        assert abs(x.mean() - 0.5) < 0.02
    else:  # fitted on (class_gaussian) or made of (data_noise) the train images
        assert abs(x.mean() - real_mean) < 0.05


# --- the JSON and the event -------------------------------------------------------------------

@pytest.mark.slow
def test_eval_json_puts_floor_and_init_baseline_beside_fd_ref(jem_run):
    result = evaluate(jem_run, n=20, attacks="apgd-ce", pgd_steps=5, fid="off", n_samples=400)
    fd = result["generation"]["fd_ref"]
    # the existing keys stay
    assert fd["fd_ref"] >= 0 and "reference" in fd["feature_network"] and fd["n_fake"] == 400
    assert fd["reference_set"].startswith("digits train split")
    # the floor: held-out test images, as many as there are (300 < 400 generated)
    floor = fd["floor"]
    assert floor["n"] == 300 and "note" in floor
    assert floor["source"] == "held-out real images: the first 300 of the 300 images of the digits test split"
    # the init baseline: as many uniform draws as generated samples, seeded with the eval's seed
    base = fd["init_baseline"]
    assert base["source"] == "uniform draws (the sampler's init)"
    assert (base["n"], base["init"], base["seed"]) == (400, "uniform", 0)
    assert 0 <= floor["fd_ref"] < base["fd_ref"] / 3  # real digits are far closer than noise
    assert fd["beats_init"] == (fd["fd_ref"] < base["fd_ref"])
    assert result["generation"]["fid"] == {"fid": None, "skipped": "--no-fid"}
    stored = json.loads(Path(result["files"]["json"]).read_text())
    assert stored["generation"]["fd_ref"] == fd
    event = [e for e in read_events(jem_run) if e["type"] == "eval" and e.get("source") == "ebjdat eval"][-1]
    assert event["fd_ref"] == fd["fd_ref"] and event["fd_ref_floor"] == floor["fd_ref"]
    assert event["fd_ref_init"] == base["fd_ref"] and event["gen_init"] == "uniform"
    assert event["fid"] is None and event["fid_floor"] is None and event["fid_init"] is None
    # reproducible: the same seed gives the same floor and baseline
    again = evaluate(jem_run, n=20, attacks="apgd-ce", pgd_steps=5, fid="off", n_samples=400, write=False)
    assert again["generation"]["fd_ref"]["init_baseline"] == base
    assert again["generation"]["fd_ref"]["floor"] == floor


def test_fid_block_has_floor_and_init_baseline_with_the_same_keys(jem_run, monkeypatch):
    """FID/KID (torch-fidelity stubbed: the wiring, not Inception) of the samples, the floor and
    the baseline against one reference set whose features are cached between the three calls."""
    calls = []

    def fake_metrics(fake, real, *, weights, device, real_cache_dir=None, **kw):
        calls.append((fake.shape[0], real.shape[0], real_cache_dir))
        gap = abs(float(fake.float().mean()) / (255.0 if fake.dtype == torch.uint8 else 1.0)
                  - float(real.float().mean()) / 255.0)
        return {"fid": 100 * gap, "kid_mean": gap, "kid_std": 0.0,
                "kid_subset_size": min(1000, fake.shape[0], real.shape[0]), "feature_network": "stub",
                "n_fake": int(fake.shape[0]), "n_real": int(real.shape[0]), "seconds": 0.0}

    monkeypatch.setattr(fid_module, "generation_metrics", fake_metrics)
    monkeypatch.setattr(fid_module, "inception_weights", lambda explicit, cache_dir: Path("stub.pth"))
    result = evaluate(jem_run, n=20, attacks="apgd-ce", pgd_steps=5, fid="on", n_samples=100)
    fid = result["generation"]["fid"]
    assert [c[0] for c in calls] == [100, 100, 100]  # samples, floor (100 of 300 test), baseline
    assert calls[0][2] is not None and len({c[2] for c in calls}) == 1 and len({c[1] for c in calls}) == 1
    assert fid["fid"] is not None and fid["feature_network"] == "stub"
    for block in ("floor", "init_baseline"):
        assert set(fid[block]) >= {"fid", "kid_mean", "kid_std", "kid_subset_size", "n", "source"}
    assert fid["floor"]["n"] == 100 and "held-out" in fid["floor"]["source"] and "note" not in fid["floor"]
    assert fid["init_baseline"]["source"] == "uniform draws (the sampler's init)"
    assert fid["floor"]["fid"] < fid["init_baseline"]["fid"]
    assert fid["beats_init"] == (fid["fid"] < fid["init_baseline"]["fid"])
    assert fid["kid_beats_init"] == (fid["kid_mean"] < fid["init_baseline"]["kid_mean"])
    # fd_ref and FID measure the same floor and baseline images
    fd = result["generation"]["fd_ref"]
    assert (fd["floor"]["n"], fd["init_baseline"]["n"]) == (100, 100)
    event = [e for e in read_events(jem_run) if e["type"] == "eval" and e.get("source") == "ebjdat eval"][-1]
    assert event["fid_floor"] == fid["floor"]["fid"] and event["fid_init"] == fid["init_baseline"]["fid"]


# --- the text output --------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_eval_prints_each_metric_beside_its_floor_and_init(jem_run):
    res = ebjdat("eval", str(jem_run), "--n", "20", "--attacks", "apgd-ce", "--no-fid", "--n-samples", "48")
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if x.strip().startswith("fd_ref"))
    assert re.fullmatch(r"  fd_ref      \d+\.\d{4}   \(floor \d+\.\d{4} held-out test n=48, "
                        r"init \d+\.\d{4} uniform n=48; (beats init|NOT better than init)\)", line), line
    assert "replay buffer vs digits train split" in res.stdout
    assert "FID         not computed: --no-fid" in res.stdout
    helptext = ebjdat("eval", "--help")
    assert helptext.returncode == 0
    flat = " ".join(helptext.stdout.split())
    assert "floor (held-out test images)" in flat and "init baseline" in flat


# --- the TUI's eval panel ---------------------------------------------------------------------

EVENT = {"type": "eval", "time": 1795352940.0, "step": 40, "epoch": 2.0, "split": "test",
         "source": "ebjdat eval", "clean_acc": 0.93, "n": 100, "checkpoint": "best",
         "fd_ref": 9.2883, "fd_ref_floor": 0.5012, "fd_ref_init": 1.7934,
         "fid": 31.25, "fid_floor": 3.5, "fid_init": 180.0, "gen_init": "class_gaussian",
         "path": "eval/x.json"}


def test_eval_rows_and_history_show_floor_and_init():
    rows = {r[0]: r for r in eval_rows((EVENT,))}
    assert rows["fd_ref"][1:3] == ("9.29", "init 1.79 floor 0.501 (init class_gaussian)")
    assert rows["FID"][1:3] == ("31.25", "init 180 floor 3.5 (init class_gaussian)")
    text = "\n".join(line.plain for line in eval_lines((EVENT,), 64, 10))
    assert re.search(r"fd_ref\s+9\.29  init 1\.79 floor 0\.501 \(init class_gaussian\)\s+@40", text), text
    # narrow: the step marker goes first, then whole words, never part of a number
    narrow = [line.plain.rstrip() for line in eval_lines((EVENT,), 38, 10)]
    assert "fd_ref   9.29  init 1.79 floor 0.501…" in narrow, narrow
    assert "FID     31.25  init 180 floor 3.5…" in narrow, narrow
    assert "clean    0.93  test n=100 best     @40" in narrow, narrow
    history = "\n".join(line.plain for line in history_lines((EVENT,)))
    assert ("  fd_ref  9.288  (reference-CNN features; not FID)\n"
            "    init   1.793  class_gaussian\n"
            "    floor  0.5012  held-out test\n"
            "  FID  31.25\n"
            "    init   180  class_gaussian\n"
            "    floor  3.5  held-out test\n") in history
    # an older event, without floor and baseline, reads as before
    old = {k: v for k, v in EVENT.items() if not k.endswith(("_floor", "_init"))}
    rows = {r[0]: r for r in eval_rows((old,))}
    assert rows["fd_ref"][2] == "ref-CNN feats, not FID" and rows["FID"][2] == "Inception"
    history = "\n".join(x.plain for x in history_lines((old,)))
    assert "  fd_ref  9.288  (reference-CNN features; not FID)\n  FID  31.25\n" in history
    assert "floor" not in history


def test_dashboard_eval_panel_shows_floor_and_init(tmp_path: Path):
    from ebjdat_tui.app import create_app

    run_dir = copy_run(tmp_path / "quickstart-rec")
    append(run_dir, EVENT)

    async def script(pilot):
        await wait_for(pilot, lambda: "floor 0.501" in screen_text(pilot.app), what="the eval panel")
        assert re.search(r"fd_ref\s+9\.29\s+init 1\.79 floor 0\.501", screen_text(pilot.app))
        assert re.search(r"FID\s+31\.25\s+init 180 floor 3\.5", screen_text(pilot.app))
        await pilot.press("3")
        await wait_for(pilot, lambda: "floor  0.5012" in screen_text(pilot.app), what="the eval history")
        assert "init   1.793  class_gaussian" in screen_text(pilot.app)

    run_app(create_app(attach=run_dir, poll_interval=0.05, redraw_hz=20.0), script, size=(100, 30))


def test_text_of_fid_and_kid_beside_their_floor_and_init():
    from ebjdat_tui.cli.evaluate import _beside_text

    fid = {"fid": 31.25, "kid_mean": 0.012, "beats_init": True, "kid_beats_init": False,
           "floor": {"fid": 3.5, "kid_mean": 0.001, "n": 300, "source": "held-out ..."},
           "init_baseline": {"fid": 180.0, "kid_mean": 0.0105, "n": 1000, "init": "class_gaussian"}}
    assert _beside_text(fid, "fid", ".3f") == \
        "(floor 3.500 held-out test n=300, init 180.000 class_gaussian n=1000; beats init)"
    assert _beside_text(fid, "kid_mean", ".5f", "kid_beats_init") == \
        "(floor 0.00100 held-out test n=300, init 0.01050 class_gaussian n=1000; NOT better than init)"
    assert _beside_text({"fid": 31.25}, "fid", ".3f") == ""  # an older result: the number alone
