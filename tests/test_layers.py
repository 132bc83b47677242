"""The house's layers: the import-linter contract in pyproject.toml (run by `lint-imports` in
.ci/run) names every package and every public top-level module of the engine (`errors`; not the
private `_version`), so a new one cannot slip past it."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent


def _contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_the_layers_contract_names_every_engine_package_and_module():
    (layers,) = [c for c in _contracts() if c["type"] == "layers"]
    named = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    packages = {p.parent.name for p in (REPO / "ebjdat_engine").glob("*/__init__.py")}
    modules = {p.stem for p in (REPO / "ebjdat_engine").glob("*.py") if not p.name.startswith("_")}
    assert named == packages | modules, \
        f"add to (or drop from) the layers contract: {sorted(named ^ (packages | modules))}"


def test_the_engine_is_forbidden_to_import_its_front_end():
    (forbidden,) = [c for c in _contracts() if c["type"] == "forbidden"]
    assert forbidden["source_modules"] == ["ebjdat_engine"]
    assert forbidden["forbidden_modules"] == ["ebjdat_tui"]


def test_no_engine_source_names_the_front_end():
    """Not even as a string (the study runner once started `python -m ebjdat_tui.cli` itself; the
    command line is now passed in by the front end)."""
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "ebjdat_engine").rglob("*.py")
                 if "ebjdat_tui" in p.read_text()]
    assert not offenders, offenders
