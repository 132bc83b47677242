"""Perturbation budgets in the units the samplers use (pixels of [0, 1] images), per profile.

The recipe writes budgets in pixel units ("8/255"). The `reference` profile reproduces the
released EB-JDAT code, which applies the same numbers to [-1, 1] inputs (so a written 8/255 is
4/255 in pixels) and never projects onto the ε-ball (ALGORITHMS.md §4.2, §4.5).
"""

from __future__ import annotations

import attrs

from ..recipe import AdversaryConfig


@attrs.frozen
class PixelBudget:
    """ε and the step size in pixel units of [0, 1] images, and whether to project each step."""

    eps: float
    step_size: float
    project: bool
    units: str  # how the recipe's numbers were read, recorded in every output

    def describe(self) -> dict[str, object]:
        return {"eps_pixel": self.eps, "step_pixel": self.step_size, "projection": self.project,
                "units": self.units}


def pixel_budget(adv: AdversaryConfig, profile: str) -> PixelBudget:
    if profile == "reference":
        return PixelBudget(adv.eps.value / 2, adv.step_size.value / 2, project=False,
                           units="[-1, 1] (reference profile: pixel = value / 2, no projection)")
    return PixelBudget(adv.eps.value, adv.step_size.value, project=True, units="pixel [0, 1]")
