"""Collapse detection for energy-based training ([monitor.collapse]).

Energy-based classifiers diverge suddenly: the reference code aborts when |L| > 1e8 (JEM,
JEM++) or when |loss of the p(x) part| > 1e5 (SADA-JEM), and the JEM authors restarted from
the last checkpoint with a lower lr (ALGORITHMS.md §1.5, §2.4, §3.5). This module replaces
those ad-hoc checks by detectors with explicit policies:

============  =====================================================================
detector      fires when (over the window since the last check)
============  =====================================================================
nonfinite     the loss, the generative loss or any energy held a NaN / inf
energy        a population's mean |E| exceeded ``energy_limit`` (max over steps)
loss          |generative loss| exceeded ``loss_limit`` (the reference guard)
gap           |mean E(clean) - mean E(generated)| exceeded ``gap_limit``
saturation    the fraction of generated pixels at the clip bounds exceeded
              ``saturation_limit``
chance        the window's mean training accuracy is below 1/K + ``chance_margin``,
              once ``chance_after`` steps are done
============  =====================================================================

`CollapseMonitor.update` runs every step and only does device arithmetic on a handful of 0-d
accumulators, so it never waits for the accelerator; `check` reads all of them with a single
host transfer every ``check_every`` steps.

How the training loop uses it (`CollapseGuard` puts the three pieces together)::

    guard = CollapseGuard(cfg.monitor.collapse, n_classes, device)   # budget, ECO: in checkpoints
    ...
    guard.update(step=step, generative_loss=lx, loss=loss, energies=energies,
                 generated=x_gen, acc=acc)                            # every step, no host sync
    if guard.due(step):
        action, alarms = guard.check(step, epoch)   # 'none' | 'warn' | 'stop' | 'rollback'
        for alarm in alarms:
            log.event("alarm", ...)
        if action == "stop":
            ...   # checkpoint, end with status "collapsed"
        elif action == "rollback":
            ...   # restore the last *healthy* checkpoint (one saved when no stop/rollback
                  # alarm was pending), multiply the lr by cfg.rollback_lr_factor,
                  # re-initialise the replay buffer if cfg.rollback_reinit_buffer,
            guard.reset()                          # and forget the diverged window
        elif action == "none":
            ...   # the current state is healthy: it may become the rollback target

`check` is `CollapseMonitor.check` (the detectors), `resolve_action` (the strongest policy, a
rollback with no budget left turned into a stop) and `record_collapse_epoch`.
The epoch of the first 'stop' or 'rollback' is the run's collapse epoch (the paper's "ECO");
it stays None for a run that never collapsed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..recipe.schema import CollapseConfig

#: Detector names, in the order their alarms are reported.
DETECTORS = ("nonfinite", "energy", "loss", "gap", "saturation", "chance")
#: Actions from weakest to strongest; `decide` returns the strongest one present.
ACTIONS = ("none", "warn", "stop", "rollback")
#: Generated pixels within this distance of 0 or 1 count as saturated (images live in [0, 1]).
SATURATION_EPS = 1e-6
#: Source names of the statistics in a 'nonfinite' alarm.
_SOURCE = {"acc_sum": "acc", "loss": "generative_loss", "sat": "generated", "gap": "gap"}


@dataclass(frozen=True)
class Alarm:
    """One detector firing: which detector, the configured policy, a sentence and the values."""

    detector: str
    policy: str
    message: str
    values: dict[str, float]


# --- device-side statistics (no host sync) ----------------------------------------------------

def _all_finite(x: torch.Tensor) -> torch.Tensor:
    """A 0-d device bool: every element of `x` is finite."""
    return torch.isfinite(x).all()


def _finite_stat(stat: torch.Tensor, inputs_finite: torch.Tensor) -> torch.Tensor:
    """`stat` made safe for a max-accumulator.

    A statistic of non-finite inputs becomes 0, so that a NaN is reported once (as 'nonfinite')
    and not again as a bogus magnitude; a statistic of finite inputs that overflowed to inf
    becomes the largest float, so that the magnitude detector still fires for it.
    """
    big = torch.finfo(stat.dtype).max
    return torch.where(inputs_finite, torch.nan_to_num(stat, nan=0.0, posinf=big, neginf=big),
                       torch.zeros_like(stat))


def _saturated_fraction(x: torch.Tensor) -> torch.Tensor:
    """Fraction of the elements of `x` at the clip bounds 0 and 1 (a 0-d float tensor)."""
    at_bounds = (x <= SATURATION_EPS) | (x >= 1.0 - SATURATION_EPS)
    return at_bounds.float().mean()


# --- the monitor --------------------------------------------------------------------------------

class CollapseMonitor:
    """Device-side collapse detectors, read every `cfg.check_every` steps (one host transfer).

    The accumulators are 0-d float tensors on `device`, keyed by name and created the first time
    their input appears (a key's presence depends on which arguments were given, never on tensor
    values): ``bad:<source>`` (1 when the source was non-finite at some step), ``mag:<population>``
    (max mean |E|), ``loss`` (max |generative loss|), ``gap``, ``sat`` and ``acc_sum``.
    """

    def __init__(self, cfg: CollapseConfig, n_classes: int, device: torch.device):
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        self.cfg = cfg
        self.n_classes = n_classes
        self.device = torch.device(device)
        self._acc: dict[str, torch.Tensor] = {}
        self._acc_steps = 0

    # -- per step ----------------------------------------------------------------------------

    def update(self, *, step: int, generative_loss: torch.Tensor | None, loss: torch.Tensor,
               energies: dict[str, torch.Tensor], generated: torch.Tensor | None,
               acc: torch.Tensor | None) -> None:
        """Fold one step's values into the accumulators, with device operations only.

        `energies` maps a population ('clean', 'adversarial', 'generated') to per-sample
        energies; `generated` are the negatives in [0, 1]; `acc` is the batch accuracy (a
        scalar, or per-sample correctness, averaged here). `step` is accepted for symmetry with
        the other monitors; the window is delimited by `check`.
        """
        del step
        self._nonfinite("loss", self._prep(loss))
        if generative_loss is not None:
            lx = self._prep(generative_loss)
            finite = self._nonfinite("generative_loss", lx)
            self._max("loss", _finite_stat(lx.abs().max(), finite))
        means: dict[str, torch.Tensor] = {}
        for pop, e in energies.items():
            e = self._prep(e)
            if e.numel() == 0:
                continue
            finite = self._nonfinite(f"energy:{pop}", e)
            self._max(f"mag:{pop}", _finite_stat(e.abs().mean(), finite))
            means[pop] = (e.mean(), finite)
        if "clean" in means and "generated" in means:
            (mc, fc), (mg, fg) = means["clean"], means["generated"]
            self._max("gap", _finite_stat((mc - mg).abs(), fc & fg))
        if generated is not None and generated.numel() > 0:
            self._max("sat", _saturated_fraction(self._prep(generated)))
        if acc is not None and acc.numel() > 0:
            self._add("acc_sum", self._prep(acc).mean())
            self._acc_steps += 1

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        """`x` detached, as float32 on the monitor's device (no copy when it already is)."""
        return x.detach().to(device=self.device, dtype=torch.float32)

    def _nonfinite(self, source: str, x: torch.Tensor) -> torch.Tensor:
        """OR-accumulate 'x has a non-finite element'; return the device bool 'x is finite'."""
        finite = _all_finite(x)
        self._max(f"bad:{source}", (~finite).float())
        return finite

    def _max(self, key: str, value: torch.Tensor) -> None:
        prev = self._acc.get(key)
        self._acc[key] = value.clone() if prev is None else torch.maximum(prev, value)

    def _add(self, key: str, value: torch.Tensor) -> None:
        prev = self._acc.get(key)
        self._acc[key] = value.clone() if prev is None else prev + value

    # -- every check_every steps ---------------------------------------------------------------

    def due(self, step: int) -> bool:
        """Whether `check` should run at this step."""
        return step % self.cfg.check_every == 0

    def check(self, step: int) -> list[Alarm]:
        """Read the window's accumulators (one host transfer), reset them, return the alarms."""
        stats = self._read()
        acc_steps = self._acc_steps
        self.reset()
        if not stats:
            return []
        alarms = [self._check_nonfinite(stats),
                  self._check_energy(stats),
                  self._check_over("loss", stats.get("loss"), self.cfg.loss_limit, self.cfg.loss,
                                   "max |generative loss|", "loss_limit"),
                  self._check_over("gap", stats.get("gap"), self.cfg.gap_limit, self.cfg.gap,
                                   "max |mean E(clean) - mean E(generated)|", "gap_limit"),
                  self._check_over("saturation", stats.get("sat"), self.cfg.saturation_limit,
                                   self.cfg.saturation, "fraction of generated pixels at 0 or 1",
                                   "saturation_limit"),
                  self._check_chance(stats, acc_steps, step)]
        return [a for a in alarms if a is not None]

    def reset(self) -> None:
        """Forget the window (after each check, and after a rollback)."""
        self._acc.clear()
        self._acc_steps = 0

    def _read(self) -> dict[str, float]:
        """All accumulators as Python floats, with a single device-to-host copy."""
        if not self._acc:
            return {}
        keys = list(self._acc)
        values = torch.stack([self._acc[k] for k in keys]).cpu().tolist()
        return dict(zip(keys, values))

    def _check_nonfinite(self, stats: dict[str, float]) -> Alarm | None:
        """One alarm naming every source that held a NaN/inf (also a non-finite accumulator)."""
        bad = {k[4:]: 1.0 for k, v in stats.items() if k.startswith("bad:") and v != 0.0}
        # The statistics are sanitised on the device, so this only catches what slipped through
        # (a NaN accuracy, say): a NaN must never pass a `>` comparison silently.
        bad.update({_SOURCE.get(k, k): 1.0 for k, v in stats.items()
                    if not k.startswith("bad:") and not math.isfinite(v)})
        if not bad:
            return None
        names = ", ".join(sorted(bad))
        return Alarm("nonfinite", self.cfg.nonfinite, f"non-finite values in {names}", bad)

    def _check_energy(self, stats: dict[str, float]) -> Alarm | None:
        """One alarm listing every population whose max mean |E| exceeds energy_limit."""
        limit = self.cfg.energy_limit
        over = {k[4:]: v for k, v in stats.items()
                if k.startswith("mag:") and math.isfinite(v) and v > limit}
        if not over:
            return None
        text = "; ".join(f"mean |E({pop})| = {v:.3g} > energy_limit {limit:.3g}" for pop, v in over.items())
        return Alarm("energy", self.cfg.energy, text, {**over, "limit": limit})

    @staticmethod
    def _check_over(detector: str, value: float | None, limit: float, policy: str,
                    what: str, limit_name: str) -> Alarm | None:
        """An alarm when a finite `value` exceeds `limit` (non-finite ones are 'nonfinite')."""
        if value is None or not math.isfinite(value) or not value > limit:
            return None
        return Alarm(detector, policy, f"{what} = {value:.3g} > {limit_name} {limit:.3g}",
                     {"value": value, "limit": limit})

    def _check_chance(self, stats: dict[str, float], acc_steps: int, step: int) -> Alarm | None:
        """An alarm when the window's mean accuracy is at chance, once chance_after steps are done."""
        if acc_steps == 0 or step < self.cfg.chance_after:
            return None
        mean = stats["acc_sum"] / acc_steps
        floor = 1.0 / self.n_classes + self.cfg.chance_margin
        if not math.isfinite(mean) or not mean < floor:
            return None
        return Alarm("chance", self.cfg.chance,
                     f"mean training accuracy = {mean:.3g} < chance 1/{self.n_classes} + margin "
                     f"{self.cfg.chance_margin:.3g} = {floor:.3g}",
                     {"acc": mean, "limit": floor})


# --- actions --------------------------------------------------------------------------------------

def decide(alarms: list[Alarm]) -> str:
    """The strongest policy among `alarms`: 'rollback' > 'stop' > 'warn' > 'none'."""
    return max((a.policy for a in alarms), key=ACTIONS.index, default="none")


class RollbackBudget:
    """How many rollbacks remain (cfg.max_rollbacks); a rollback with no budget left becomes 'stop'.

    Its state belongs in checkpoints, so that a resumed run does not get a fresh budget.
    """

    def __init__(self, max_rollbacks: int):
        if max_rollbacks < 0:
            raise ValueError(f"max_rollbacks must be >= 0, got {max_rollbacks}")
        self.max_rollbacks = max_rollbacks
        self.used = 0

    @property
    def left(self) -> int:
        return self.max_rollbacks - self.used

    def take(self) -> bool:
        """True (and count it) if one more rollback is allowed."""
        if self.used >= self.max_rollbacks:
            return False
        self.used += 1
        return True

    def state_dict(self) -> dict[str, int]:
        return {"used": self.used}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.used = int(state["used"])


def resolve_action(alarms: list[Alarm], budget: RollbackBudget,
                   agree: Callable[[str], str] = lambda action: action) -> str:
    """`decide(alarms)`, with a 'rollback' turned into 'stop' once the budget is spent.

    `agree` turns this process's decision into the one every process takes (under torchrun: the
    strongest any rank asks for); the budget is taken after agreeing, once per rollback.
    Takes one unit of the budget when it returns 'rollback'.
    """
    action = agree(decide(alarms))
    if action == "rollback" and not budget.take():
        return "stop"
    return action


def record_collapse_epoch(current: float | None, action: str, epoch: float) -> float | None:
    """The run's collapse epoch (ECO): the epoch of the first 'stop' or 'rollback', else None."""
    if current is None and action in ("stop", "rollback"):
        return epoch
    return current


class CollapseGuard:
    """The detectors, the rollback budget and the collapse epoch of one run: one decision per check."""

    def __init__(self, cfg: CollapseConfig, n_classes: int, device: torch.device):
        self.detectors = CollapseMonitor(cfg, n_classes, device)
        self.rollbacks = RollbackBudget(cfg.max_rollbacks)
        self.collapse_epoch: float | None = None

    def update(self, **values: Any) -> None:
        """This step's values (device arithmetic only): see `CollapseMonitor.update`."""
        self.detectors.update(**values)

    def due(self, step: int) -> bool:
        return self.detectors.due(step)

    def check(self, step: int, epoch: float,
              agree: Callable[[str], str] = lambda action: action) -> tuple[str, list[Alarm]]:
        """Read the detectors (one host sync) and decide: the action and the alarms to report
        (under torchrun a rank whose own detectors stayed quiet reports 'other_rank')."""
        alarms = self.detectors.check(step)
        action = resolve_action(alarms, self.rollbacks, agree)
        if action == "none":
            return action, alarms
        self.collapse_epoch = record_collapse_epoch(self.collapse_epoch, action, epoch)
        if not alarms:  # under torchrun: another rank's detectors fired
            alarms = [Alarm("other_rank", action, "a collapse detector fired on another rank", {})]
        return action, alarms

    def reset(self) -> None:
        """Forget the window since the last check (after a rollback)."""
        self.detectors.reset()
