"""Field helpers for the recipe schema: documented fields, value checks and ε budgets.

Every recipe field is declared with :func:`field`, which carries a one-line doc (shown by
`ebjdat show --doc` and the README's recipe reference) and an optional value check. The same
check runs twice: while a TOML recipe is structured (so every failing field is reported with
its `$.path`, all at once) and as the attrs validator (so configs built in code are checked too).
"""

from __future__ import annotations

import difflib
import math
from fractions import Fraction
from typing import Any, Callable, Sequence

import attrs

from ..errors import UserError

Check = Callable[[Any], None]


class CheckError(UserError, ValueError):
    """A value check failed; the message says what to change."""


def field(default: Any, doc: str, check: Check | None = None, factory: bool = False) -> Any:
    """A recipe field with a default, a one-line doc and an optional value check."""
    metadata = {"doc": doc, "check": check}
    validator = None
    if check is not None:

        def validator(_inst: Any, _attr: attrs.Attribute, value: Any, _check: Check = check) -> None:
            _check(value)

    if factory:
        return attrs.field(factory=default, metadata=metadata, validator=validator)
    return attrs.field(default=default, metadata=metadata, validator=validator)


def doc_of(cls: type, name: str) -> str:
    """The doc string of field `name` of the config class `cls`."""
    return attrs.fields_dict(cls)[name].metadata.get("doc", "")


def suggest(word: str, choices: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for the nearest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --- checks ---------------------------------------------------------------------------------

def one_of(*choices: str) -> Check:
    def check(value: str) -> None:
        if value not in choices:
            listed = ", ".join(repr(c) for c in choices)
            raise CheckError(f"must be one of {listed}, got {value!r}{suggest(value, choices)}")

    check.choices = choices  # type: ignore[attr-defined]
    return check


def positive(value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise CheckError(f"must be a finite number > 0, got {value!r}")


def non_negative(value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise CheckError(f"must be a finite number >= 0, got {value!r}")


def probability(value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise CheckError(f"must lie in [0, 1], got {value!r}")


def in_range(lo: float, hi: float) -> Check:
    def check(value: float) -> None:
        if not lo <= value <= hi:
            raise CheckError(f"must lie in [{lo}, {hi}], got {value!r}")

    return check


def at_least(lo: int) -> Check:
    def check(value: int) -> None:
        if value < lo:
            raise CheckError(f"must be >= {lo}, got {value!r}")

    return check


def each(item_check: Check) -> Check:
    def check(values: Sequence[Any]) -> None:
        for i, v in enumerate(values):
            try:
                item_check(v)
            except CheckError as e:
                raise CheckError(f"item {i}: {e}") from None

    return check


def increasing(values: Sequence[float]) -> None:
    if any(b <= a for a, b in zip(values, values[1:])):
        raise CheckError(f"must be strictly increasing, got {list(values)!r}")


def length(n: int) -> Check:
    def check(values: Sequence[Any]) -> None:
        if len(values) != n:
            raise CheckError(f"must have exactly {n} items, got {len(values)}")

    return check


def all_of(*checks: Check) -> Check:
    def check(value: Any) -> None:
        for c in checks:
            c(value)

    return check


# --- perturbation budgets -------------------------------------------------------------------

@attrs.frozen
class Budget:
    """A perturbation size written with explicit units, e.g. ``"8/255"``.

    The text is kept verbatim (so a resolved recipe prints what the user wrote); `value` is the
    number in **pixel units of [0, 1] images**. The reference profile's [−1, 1] units are a
    property of the profile, never of the number written here.
    """

    text: str

    @property
    def value(self) -> float:
        return float(parse_budget(self.text))

    def __str__(self) -> str:
        return self.text


def parse_budget(text: str) -> Fraction:
    """Parse ``"8/255"``, ``"0.5"`` or ``"0"`` into a non-negative Fraction (pixel units)."""
    s = text.strip()
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            value = Fraction(Fraction(num.strip()), Fraction(den.strip()))
        else:
            value = Fraction(s)
    except (ValueError, ZeroDivisionError):
        raise CheckError(
            f"must be a budget in pixel units of [0, 1] images such as \"8/255\" or \"0.5\", got {text!r}"
        ) from None
    if value < 0:
        raise CheckError(f"must be >= 0, got {text!r}")
    return value


def is_section(t: Any) -> bool:
    """True for a config class (a TOML table); Budget is an attrs class but a scalar value."""
    return isinstance(t, type) and attrs.has(t) and t is not Budget
