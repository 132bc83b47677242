"""The digits quickstart's loss curve, pinned bit for bit (a refactor must not change a number).

`tests/data/golden_quickstart.json` holds the per-step loss and every loss term of a short,
seeded run of `recipes/quickstart.toml` (EB-JDAT on the JEM++ base: sampler, ascent, h1, CE, h2,
h3 all run), recorded on the landed main before the house was rebuilt. Regenerate it only for a
change that is meant to change the numbers, and say so in the commit:

    python tests/test_golden_quickstart.py --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden_quickstart.json"
OVERRIDES = ["train.max_steps=6", "train.log_every=1", "monitor.every=0", "eval.every_epochs=0",
             "monitor.samples_every=0", "monitor.gen_every=0", "runtime.threads=1"]


def quickstart_curve(out_dir: Path) -> list[dict]:
    """(loss, terms) of every step of the short quickstart run, as the events recorded them."""
    from ebjdat_engine.recipe import resolve
    from ebjdat_engine.rundir.events import canonical_terms, read_events
    from ebjdat_engine.train.session import run

    recipe = resolve(ROOT / "recipes" / "quickstart.toml", OVERRIDES + [f'run.out_dir="{out_dir.as_posix()}"'])
    result = run(recipe, str(ROOT / "recipes" / "quickstart.toml"))
    return [{"step": e["step"], "loss": e["loss"], "terms": canonical_terms(e["terms"])}
            for e in read_events(result.run_dir) if e["type"] == "metrics"]


def test_the_quickstart_losses_are_unchanged_bit_for_bit(tmp_path: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    got = quickstart_curve(tmp_path)
    assert [g["step"] for g in got] == list(range(1, 7))
    assert got == golden["curve"]   # exact float equality, every term


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        curve = quickstart_curve(Path(folder))
    GOLDEN.write_text(json.dumps({"recipe": "recipes/quickstart.toml", "overrides": OVERRIDES, "curve": curve},
                                 indent=1) + "\n")
    print(f"wrote {GOLDEN}: {len(curve)} steps")
