"""Turning TOML into a validated `Recipe`: files, `extends`, `--set`, strict structuring, errors.

Precedence, in one place: ``--set`` > the recipe file > its ``extends`` bases (nearest first) >
the schema's defaults. Merging happens on plain dicts before validation, so every problem of
the merged recipe is reported at once, each with its ``$.path``, and nothing is written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn, override

from ..errors import UserError
from .fields import Budget, CheckError, is_section, parse_budget, suggest
from .schema import REFERENCE_OBJECTIVES, Recipe, resnet_variant_problem, wrn_depth_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXTENDS_KEY = "extends"


class RecipeError(UserError):
    """One or more problems with a recipe; `errors` holds one line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("\n".join(errors))


# --- strict converter ------------------------------------------------------------------------

def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _strict_bool(value: Any, _t: type) -> bool:
    if isinstance(value, bool):
        return value
    raise CheckError(f"expected a boolean (true or false), got {_type_name(value)} {value!r}")


def _strict_int(value: Any, _t: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise CheckError(f"expected an integer, got {_type_name(value)} {value!r}")


def _strict_float(value: Any, _t: type) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise CheckError(f"expected a number, got {_type_name(value)} {value!r}")


def _strict_str(value: Any, _t: type) -> str:
    if isinstance(value, str):
        return value
    raise CheckError(f"expected a string, got {_type_name(value)} {value!r}")


def _strict_list(value: Any, t: type) -> list:
    if not isinstance(value, list):
        raise CheckError(f"expected an array, got {_type_name(value)} {value!r}")
    (item_type,) = t.__args__
    items = []
    for i, v in enumerate(value):
        try:
            items.append(converter.structure(v, item_type))
        except CheckError as e:
            raise CheckError(f"item {i}: {e}") from None
    return items


def _budget(value: Any, _t: type) -> Budget:
    if isinstance(value, str):
        parse_budget(value)
        return Budget(value.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        parse_budget(repr(value))
        return Budget(repr(value))
    raise CheckError(f"expected a budget such as \"8/255\" (pixel units), got {_type_name(value)} {value!r}")


def _attrs_hook_factory(cl: type):
    """Structure an attrs config class: a table is required, unknown keys are errors and
    each field's check runs (inside cattrs, so every failing field is reported with its path)."""
    overrides = {}
    for a in attrs.fields(cl):
        check = a.metadata.get("check")
        if check is not None and not is_section(a.type):

            def hook(value: Any, t: type, _check=check) -> Any:
                structured = converter.structure(value, t)
                _check(structured)
                return structured

            overrides[a.name] = override(struct_hook=hook)
    generated = make_dict_structure_fn(cl, converter, _cattrs_forbid_extra_keys=True, **overrides)

    def structure_table(value: Any, t: type) -> Any:
        if not isinstance(value, Mapping):
            raise CheckError(f"expected a table of {cl.__name__} keys, got {_type_name(value)} {value!r}")
        return generated(value, t)

    return structure_table


converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)
converter.register_structure_hook(bool, _strict_bool)
converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(float, _strict_float)
converter.register_structure_hook(str, _strict_str)
converter.register_structure_hook_func(lambda t: getattr(t, "__origin__", None) is list, _strict_list)
converter.register_structure_hook(Budget, _budget)
converter.register_unstructure_hook(Budget, lambda b: b.text)
converter.register_structure_hook_factory(is_section, _attrs_hook_factory)


# --- error formatting ------------------------------------------------------------------------

def _messages(exc: BaseException, path: str, cl: type | None) -> list[str]:
    """Flatten a cattrs exception tree into '$.path: message' lines."""
    if isinstance(exc, ClassValidationError):
        lines: list[str] = []
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            lines += _messages(sub, f"{path}.{note.name}", note.type)
        for sub in without:
            lines += _messages(sub, path, getattr(exc, "cl", cl))
        return lines
    if isinstance(exc, IterableValidationError):
        lines = []
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            lines += _messages(sub, f"{path}[{note.index}]", note.type)
        for sub in without:
            lines += _messages(sub, path, cl)
        return lines
    if isinstance(exc, ForbiddenExtraKeysError):
        known = [a.name for a in attrs.fields(exc.cl)]
        return [f"{path}.{key}: unknown key{suggest(key, known)}" for key in sorted(exc.extra_fields)]
    if isinstance(exc, CheckError):
        return [f"{path}: {exc}"]
    return [f"{path}: {exc}"]


# --- files, extends, overrides ---------------------------------------------------------------

def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file; a missing file or a syntax error is a RecipeError naming the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError([f"{path}: no such recipe file"]) from None
    except IsADirectoryError:
        raise RecipeError([f"{path}: is a directory, not a recipe file"]) from None
    except OSError as e:
        raise RecipeError([f"{path}: cannot read ({e.strerror})"]) from None
    return parse_toml_bytes(raw, str(path))


def parse_toml_bytes(raw: bytes, where: str) -> dict[str, Any]:
    """TOML from bytes: UTF-8 (a leading byte-order mark is skipped), else a RecipeError."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 BOM (some editors write one): not part of the TOML
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise RecipeError([f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x} at line {line}); "
                           f"TOML files are UTF-8: save it as UTF-8"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError([f"{where}: not valid TOML: {e}"]) from None


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`top` over `base`: tables merge key by key, every other value (arrays too) is replaced."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_with_extends(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The recipe at `path` merged over the bases it `extends` (paths relative to the file)."""
    path = path.resolve()
    if path in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, path))
        raise RecipeError([f"$.{EXTENDS_KEY}: recipes extend each other in a cycle: {cycle}"])
    raw = read_toml(path)
    bases = raw.pop(EXTENDS_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise RecipeError([f"{path}: $.{EXTENDS_KEY}: expected a path string or an array of them"])
    merged: dict[str, Any] = {}
    for base in bases:
        merged = deep_merge(merged, load_with_extends(path.parent / base, (*_chain, path)))
    return deep_merge(merged, raw)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (["section", "key"], value); the value is parsed as TOML.

    A value that is not TOML (``--set data.name=cifar10``, after the shell ate the quotes) is
    taken as a string; the schema still decides whether a string is acceptable there.
    """
    if "=" not in text:
        raise RecipeError([f"--set {text}: expected section.key=value"])
    key, value_text = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(p.strip() for p in parts):
        raise RecipeError([f"--set {text}: expected section.key=value, e.g. optim.lr=0.02"])
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text
    return [p.strip() for p in parts], value


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply each ``--set`` in order (a later one wins)."""
    result = dict(raw)
    for text in overrides:
        parts, value = parse_override(text)
        patch: Any = value
        for part in reversed(parts):
            patch = {part: patch}
        result = deep_merge(result, patch)
    return result


def structure(raw: Mapping[str, Any]) -> Recipe:
    """Validate a merged dict into a Recipe, or raise RecipeError with every problem."""
    raw = _classes_file_alias(raw)
    try:
        recipe = converter.structure(dict(raw), Recipe)
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError, CheckError) as e:
        raise RecipeError(_messages(e, "$", Recipe)) from None
    problems = _across_sections(recipe)
    if problems:
        raise RecipeError(problems)
    return recipe


def _classes_file_alias(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """`data.classes = "file.txt"` (a string, not a list) means data.classes_file = "file.txt"."""
    data = raw.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("classes"), str):
        return raw
    if data.get("classes_file"):
        raise RecipeError(["$.data.classes: a file name here and data.classes_file too; give one"])
    data = {k: v for k, v in data.items() if k != "classes"} | {"classes_file": data["classes"]}
    return {**raw, "data": data}


def _across_sections(recipe: Recipe) -> list[str]:
    """Settings that are valid alone but mean nothing with the rest of the recipe."""
    problems = []
    data, method = recipe.data, recipe.method.name
    if method != "dat":
        if data.clf_augment != "none":
            problems.append(f"$.data.clf_augment: only method 'dat' has a separate classifier stream "
                            f"(method.name is {method!r}); remove it or set it to \"none\"")
        if data.cutout:
            problems.append(f"$.data.cutout: only method 'dat' has a separate classifier stream "
                            f"(method.name is {method!r}); remove it or set it to 0")
        if recipe.sampler.seed_folder:
            problems.append(f"$.sampler.seed_folder: only method 'dat' starts negatives from seed "
                            f"images (method.name is {method!r}); remove it")
    problems += _reference_profile(recipe)
    problems += _buildable(recipe)
    if data.name != "imagefolder" and (data.classes or data.classes_file):
        problems.append(f"$.data.classes: class lists are for data.name = \"imagefolder\" "
                        f"(data.name is {data.name!r}); remove it")
    if data.classes and data.classes_file:
        problems.append("$.data.classes_file: give data.classes or data.classes_file, not both")
    return problems


def _buildable(recipe: Recipe) -> list[str]:
    """What the schema's fields allow one by one but the engine cannot build or run: refused here
    so that `validate`, `run`, `bench`, `study` and the TUI refuse it alike, before any data is
    read or any directory made."""
    model, method, adversary = recipe.model, recipe.method, recipe.adversary
    problems = []
    if model.pool != 1 and model.arch != "cnn":
        problems.append(f"$.model.pool: only arch 'cnn' pools to more than 1x1 (model.arch is "
                        f"{model.arch!r}); remove it")
    if model.arch == "wrn" and (problem := wrn_depth_problem(model.depth)):
        problems.append(f"$.model.depth: {problem}")
    if model.arch == "resnet" and (problem := resnet_variant_problem(model.depth, model.width)):
        problems.append(f"$.model.depth: {problem}")
    # an l-inf ball of radius 1 already holds every [0, 1] image (2 in the reference profile's
    # [-1, 1] units); l2 budgets have no such bound
    linf_max = 2 if method.profile == "reference" else 1
    if adversary.norm == "linf" and adversary.eps.value > linf_max:
        problems.append(f"$.adversary.eps: {adversary.eps} is above {linf_max}, the whole pixel range in "
                        f"{'[-1, 1]' if linf_max == 2 else 'pixel units of [0, 1] images'}; write it in "
                        f"those units, e.g. \"8/255\"")
    if adversary.eps.value > 0 and adversary.step_size.value == 0:
        problems.append(f"$.adversary.step_size: 0 with eps {adversary.eps} never moves from the random "
                        f"start; use e.g. eps/4")
    if recipe.eval.eps.value > 1:
        problems.append(f"$.eval.eps: {recipe.eval.eps} is above 1, the whole pixel range of [0, 1] images; "
                        f"write it in pixel units, e.g. \"8/255\"")
    if method.name == "trades" and adversary.norm != "linf":
        problems.append(f"$.adversary.norm: TRADES is implemented for 'linf' only, not {adversary.norm!r}; "
                        f"set adversary.norm = \"linf\" or use method 'pgd_at'")
    uses_sam = method.name == "sadajem" or (method.name == "ebjdat" and method.base == "sadajem")
    if uses_sam and recipe.runtime.amp == "fp16":
        problems.append("$.runtime.amp: fp16 with SAM (SADA-JEM, or EB-JDAT on base 'sadajem') is not "
                        "supported; use \"bf16\" or \"off\"")
    return problems


def _reference_profile(recipe: Recipe) -> list[str]:
    """`method.profile = "reference"` reproduces the released EB-JDAT code, nothing else: only for
    method 'ebjdat', only with what that code has (its ascent objective or the commented-out CE
    alternative, x~ as negatives in h2, no noise in the ascent)."""
    method, adversary = recipe.method, recipe.adversary
    if method.profile != "reference":
        return []
    if method.name != "ebjdat":
        return [f"$.method.profile: 'reference' reproduces the released EB-JDAT code and exists only for "
                f"method 'ebjdat', not {method.name!r}; use profile \"standard\""]
    problems = []
    if adversary.objective not in ("auto", *REFERENCE_OBJECTIVES):
        problems.append(f"$.adversary.objective: {adversary.objective!r} is not in the released code; the "
                        f"'reference' profile runs 'logit_cosine' (or its commented-out 'ce_cosine'); "
                        f"use method.profile = \"standard\" for {adversary.objective!r}")
    if method.h2 not in ("auto", "negatives"):
        problems.append(f"$.method.h2: {method.h2!r} is not in the released code (its h2 is 'negatives'); "
                        f"use method.profile = \"standard\" for {method.h2!r}")
    if adversary.noise:
        problems.append("$.adversary.noise: the released code's ascent has no noise; set it to 0 or use "
                        "method.profile = \"standard\"")
    return problems


def resolve(path: str | Path | None, overrides: Iterable[str] = ()) -> Recipe:
    """The Recipe for a file (or the defaults when `path` is None) with ``--set`` overrides."""
    raw = load_with_extends(Path(path)) if path is not None else {}
    return structure(apply_overrides(raw, overrides))


# --- back to TOML ----------------------------------------------------------------------------

def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain dict of a recipe, None-valued keys dropped (TOML has no null)."""
    return _drop_none(converter.unstructure(recipe))


def to_toml(recipe: Recipe) -> str:
    """The resolved recipe as TOML; loading this text gives back an equal Recipe."""
    import tomli_w

    return tomli_w.dumps(to_dict(recipe))


def from_toml_text(text: str) -> Recipe:
    """Validate recipe text (no `extends` resolution: a resolved recipe has none)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError([f"not valid TOML: {e}"]) from None
    return structure(raw)
