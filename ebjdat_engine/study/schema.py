"""The study file: a base recipe, its arms, seeds and one evaluation protocol (DESIGN.md §8b).

Typed and validated like a recipe (the same strict converter, so every problem is reported at
once with its `$.path`), and every arm × seed is resolved into a full `Recipe` before anything
runs, so a bad override in the last arm fails the study at once, not after an hour of training.

    [study]
    recipe = "../recipes/quickstart.toml"     # relative to the study file
    seeds = [0, 1, 2]
    set = ["train.epochs=12"]                  # applied to every arm, before the arm's own

    [protocol]                                 # one evaluation protocol for every arm
    n = 300
    eps = "8/255"
    attacks = "standard"

    [[arm]]
    label = "pgd_at"
    set = ["method.name=pgd_at"]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Mapping

import attrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from ..recipe.fields import Budget, CheckError, at_least, each, field, one_of
from ..recipe.load import RecipeError, _messages, apply_overrides, converter, load_with_extends, structure
from ..recipe.schema import Recipe, _attacks_check, _budget_check

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@attrs.frozen
class Devices:
    """`[study] devices`: None for 'auto', else the device indices as given."""

    indices: tuple[int, ...] | None

    def __str__(self) -> str:
        return "auto" if self.indices is None else str(list(self.indices))


def _devices(value: Any, _t: type) -> Devices:
    if value == "auto":
        return Devices(None)
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                 for v in value):
        if len(set(value)) != len(value):
            raise CheckError(f"devices repeat: {value}")
        return Devices(tuple(value))
    raise CheckError(f'expected "auto" or a non-empty list of device indices such as [0, 1], got {value!r}')


converter.register_structure_hook(Devices, _devices)
converter.register_unstructure_hook(Devices, lambda d: "auto" if d.indices is None else list(d.indices))


def _label_check(value: str) -> None:
    if not LABEL.match(value) or len(value) > 64:
        raise CheckError(f"must be 1-64 characters of letters, digits, '_', '.', '+' or '-' (it names "
                         f"a directory), got {value!r}")


def _overrides_check(values: list[str]) -> None:
    for i, text in enumerate(values):
        if "=" not in text or "." not in text.split("=", 1)[0]:
            raise CheckError(f"item {i}: expected \"section.key=value\" as for --set, got {text!r}")


def _overrides_free_check(values: list[str]) -> None:
    for i, text in enumerate(values):
        if "=" not in text or not text.split("=", 1)[0].strip():
            raise CheckError(f"item {i}: expected \"key=value\" (an sbatch option without its --), got {text!r}")


def _seeds_check(values: list[int]) -> None:
    if not values:
        raise CheckError("give at least one seed, e.g. [0]")
    if len(set(values)) != len(values):
        raise CheckError(f"seeds repeat: {values}")
    if any(v < 0 for v in values):
        raise CheckError(f"seeds must be >= 0, got {values}")


@attrs.frozen
class StudySection:
    """[study]: what is compared, and how many times."""

    name: str = field("", "Study name: results go to <study file's folder>/<name>/ (default: the file's stem).")
    recipe: str = field("", "Base recipe of every arm (a path relative to the study file).")
    set: list[str] = field(list, "Overrides applied to every arm, before the arm's own (as --set).",
                           check=_overrides_check, factory=True)
    seeds: list[int] = field(lambda: [0], "Seeds (run.seed): each arm trains once per seed; tables "
                             "give mean ± std over seeds.", check=_seeds_check, factory=True)
    jobs: int = field(1, "Arms trained and evaluated at once (--jobs overrides). On a CPU each job "
                      "uses the recipe's runtime.threads.", check=at_least(1))
    devices: "Devices" = field(lambda: Devices(None), "GPUs the running arms get, one each (per_device "
                               "arms each when set), as CUDA_VISIBLE_DEVICES: 'auto' (every CUDA device "
                               "the study sees; none on a CPU machine, where runs start as before) or a "
                               "list of device indices, e.g. [0, 1].", factory=True)
    per_device: int = field(1, "Arms that share one device at a time (with devices).", check=at_least(1))


@attrs.frozen
class CurveSection:
    """[protocol.curve]: robust accuracy over several budgets (a cheap AutoAttack subset)."""

    eps: list[Budget] = field(list, "Budgets of the curve, pixel units (empty: no curve).",
                              check=each(_budget_check), factory=True)
    attacks: str = field("apgd-ce,apgd-t", "AutoAttack attacks of the curve ('standard' or a comma list).",
                         check=_attacks_check)
    n: int = field(0, "Test points of the curve (0: protocol.n).", check=at_least(0))


def _chain_lengths_check(values: list[int]) -> None:
    if any(v < 0 for v in values):
        raise CheckError(f"chain lengths are steps >= 0, got {values}")
    if values and 0 not in values:
        raise CheckError(f"include 0 (the init draws themselves, what the chains start from), got {values}")


@attrs.frozen
class CheckSection:
    """[protocol.check]: a second, stronger AutoAttack on some arms (e.g. standard AutoAttack,
    FAB-T and Square included, on the arms whose robustness is the claim): robustness that only the
    gradient attacks see would be gradient masking."""

    arms: list[str] = field(list, "Labels of the arms checked (empty: no check).", factory=True)
    attacks: str = field("standard", "AutoAttack of the check ('standard' or a comma list).",
                         check=_attacks_check)


@attrs.frozen
class ProtocolSection:
    """[protocol]: the one evaluation every arm gets (`ebjdat eval`'s options)."""

    ckpt: str = field("last", "Checkpoint evaluated: 'last' (the end of training, the same step for "
                      "every arm) or 'best' (best validation accuracy).", check=one_of("last", "best"))
    n: int = field(1000, "Test points (0: the whole test split).", check=at_least(0))
    eps: Budget = field(Budget("8/255"), "Headline budget, pixel units of [0, 1] images.", check=_budget_check)
    norm: str = field("linf", "'linf' or 'l2'.", check=one_of("linf", "l2"))
    attacks: str = field("standard", "AutoAttack: 'standard' or a comma list.", check=_attacks_check)
    pgd_steps: int = field(20, "PGD steps (step eps/4, random start).", check=at_least(1))
    n_samples: int = field(1000, "Generated samples (and init draws) for fd_ref / FID.", check=at_least(2))
    samples: str = field("auto", "Generated samples from 'buffer', 'fresh' chains or 'auto'.",
                         check=one_of("auto", "buffer", "fresh"))
    fid: str = field("auto", "FID/KID: 'on', 'off' or 'auto' (on a GPU only).", check=one_of("on", "off", "auto"))
    seed: int = field(0, "Seed of the attacks' random starts and the samples.", check=at_least(0))
    curve: CurveSection = field(CurveSection, "Robust accuracy over several budgets.", factory=True)
    chain_lengths: list[int] = field(list, "fd_ref of fresh chains of these many steps from the init "
                                     "(e.g. [0, 5, 10, 20, 50, 100]; 0 is the init itself): does a model "
                                     "generate, or only refine its init? (empty: not measured)",
                                     check=_chain_lengths_check, factory=True)
    check: CheckSection = field(CheckSection, "A second AutoAttack on some arms.", factory=True)


@attrs.frozen
class ArmSection:
    """[[arm]]: one thing compared: a label and its overrides (or its own recipe)."""

    label: str = field("", "Name of the arm (names its run directories).", check=_label_check)
    recipe: str = field("", "The arm's own recipe instead of the study's (relative to the study file).")
    set: list[str] = field(list, "The arm's overrides (as --set), after the study's.",
                           check=_overrides_check, factory=True)


@attrs.frozen
class Arm:
    """An arm resolved: its label, where its recipe came from, its overrides and, per seed, the
    full recipe that will run."""

    label: str
    recipe_path: Path
    overrides: tuple[str, ...]
    recipes: dict[int, Recipe]


@attrs.frozen
class Study:
    """A validated study: where it lives, what it runs and how it evaluates."""

    path: Path
    name: str
    out_dir: Path
    seeds: tuple[int, ...]
    jobs: int
    protocol: ProtocolSection
    arms: tuple[Arm, ...]
    devices: tuple[int, ...] | None = None   # None: 'auto'
    per_device: int = 1
    executor: "ExecutorSection" = attrs.field(factory=lambda: ExecutorSection())

    def run_name(self, label: str, seed: int) -> str:
        return f"{label}-s{seed}"


@attrs.frozen
class ExecutorSection:
    """[executor]: where the runs go. 'local': child processes of `ebjdat study` (the default);
    'slurm': one SLURM job array through submitit (`--executor slurm` overrides `kind`)."""

    kind: str = field("local", "'local' (child processes, `jobs` at a time) or 'slurm' (a job array "
                      "through submitit; needs the `slurm` extra).", check=one_of("local", "slurm"))
    partition: str = field("", "SLURM partition (empty: the cluster's default).")
    time_min: int = field(60, "Time limit of each run's job, minutes (training and evaluation).",
                          check=at_least(1))
    gpus_per_run: int = field(0, "GPUs of each run's job (0: a CPU job).", check=at_least(0))
    cpus_per_run: int = field(1, "CPUs of each run's job.", check=at_least(1))
    mem_gb: float = field(0.0, "Memory of each run's job, GB (0: the partition's default).", check=at_least(0))
    array_parallelism: int = field(256, "Array tasks that may run at once.", check=at_least(1))
    sbatch: list[str] = field(list, "Extra sbatch options as \"key=value\" (e.g. \"account=lab\", "
                              "\"qos=high\"), passed through submitit.", check=_overrides_free_check,
                              factory=True)


def _structure(raw: Any, cls: type, path: str) -> tuple[Any, list[str]]:
    try:
        return converter.structure(raw, cls), []
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError, CheckError) as e:
        return None, _messages(e, path, cls)


def load_study(path: str | Path, jobs: int | None = None) -> Study:
    """Read, validate and resolve a study file; RecipeError lists every problem with its path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError([f"{path}: no such study file"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError([f"{path}: cannot read ({getattr(e, 'strerror', None) or e})"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError([f"{path}: not valid TOML: {e}"]) from None

    errors: list[str] = []
    known = ("study", "protocol", "arm", "executor")
    for key in raw:
        if key not in known:
            errors.append(f"$.{key}: unknown key (a study has [study], [protocol], [[arm]] and [executor] "
                          f"tables)")
    section, errs = _structure(raw.get("study", {}), StudySection, "$.study")
    errors += errs
    protocol, errs = _structure(raw.get("protocol", {}), ProtocolSection, "$.protocol")
    errors += errs
    executor, errs = _structure(raw.get("executor", {}), ExecutorSection, "$.executor")
    errors += errs
    arms_raw = raw.get("arm", [])
    if not isinstance(arms_raw, list) or not arms_raw:
        errors.append("$.arm: give at least one [[arm]] table (label, and set or recipe)")
        arms_raw = []
    arm_sections: list[tuple[int, ArmSection]] = []
    for i, item in enumerate(arms_raw):
        arm, errs = _structure(item, ArmSection, f"$.arm[{i}]")
        errors += errs
        if arm is not None:
            arm_sections.append((i, arm))
    labels = [a.label for _, a in arm_sections]
    for label in sorted({x for x in labels if labels.count(x) > 1}):
        errors.append(f"$.arm: the label {label!r} is used more than once")
    if section is not None and not section.recipe and any(not a.recipe for _, a in arm_sections):
        errors.append("$.study.recipe: give the base recipe (a path relative to the study file), "
                      "or a recipe in every arm")
    if protocol is not None:
        for label in protocol.check.arms:
            if label not in labels:
                errors.append(f"$.protocol.check.arms: no arm is labelled {label!r}")
    if errors or section is None or protocol is None:
        raise RecipeError(errors)

    base_dir = path.resolve().parent
    arms = []
    for i, arm in arm_sections:
        recipe_path = base_dir / (arm.recipe or section.recipe)
        overrides = (*section.set, *arm.set)
        where = f"$.arm[{i}] ({arm.label})"
        try:
            base = load_with_extends(recipe_path)
        except RecipeError as e:
            errors += [f"{where}: {line}" for line in e.errors]
            continue
        recipes = {}
        for seed in section.seeds:
            try:
                recipe = structure(apply_overrides(base, (*overrides, f"run.seed={seed}")))
            except RecipeError as e:
                errors += [f"{where}, seed {seed}: {line}" for line in e.errors]
                break
            recipes[seed] = recipe
        arms.append(Arm(arm.label, recipe_path, tuple(overrides), recipes))
    if errors:
        raise RecipeError(errors)
    name = section.name or path.stem
    if not LABEL.match(name) or len(name) > 64:
        raise RecipeError([f"$.study.name: must be 1-64 letters, digits, '_', '.', '+' or '-' (it names "
                           f"a directory), got {name!r}"])
    return Study(path=path, name=name, out_dir=base_dir / name, seeds=tuple(section.seeds),
                 jobs=jobs or section.jobs, protocol=protocol, arms=tuple(arms),
                 devices=section.devices.indices, per_device=section.per_device, executor=executor)


def protocol_options(protocol: ProtocolSection) -> dict[str, Any]:
    """The protocol as `ebjdat eval` options (keyword names of `evaluate`)."""
    return {"ckpt": protocol.ckpt, "n": protocol.n, "eps": protocol.eps.text, "norm": protocol.norm,
            "attacks": protocol.attacks, "pgd_steps": protocol.pgd_steps, "n_samples": protocol.n_samples,
            "samples": protocol.samples, "fid": protocol.fid, "seed": protocol.seed,
            **({"chain_lengths": sorted(set(protocol.chain_lengths))} if protocol.chain_lengths else {})}


def as_dict(value: Mapping[str, Any] | Any) -> Any:
    """A section as plain data (Budgets as their text)."""
    return converter.unstructure(value)
