"""Collapse detectors: each fires on its symptom and only then, reads happen only at `check`."""

from __future__ import annotations

import math

import attrs
import pytest
import torch

from ebjdat_engine.monitor.collapse import (
    Alarm,
    CollapseGuard,
    CollapseMonitor,
    RollbackBudget,
    decide,
    record_collapse_epoch,
    resolve_action,
)
from ebjdat_engine.recipe.schema import CollapseConfig

torch.set_num_threads(1)

N_CLASSES = 10
CPU = torch.device("cpu")


def make(device: torch.device = CPU, **overrides) -> CollapseMonitor:
    cfg = attrs.evolve(CollapseConfig(check_every=5, chance_after=0), **overrides)
    return CollapseMonitor(cfg, N_CLASSES, device)


def healthy(device: torch.device = CPU, seed: int = 0) -> dict:
    """Arguments of a healthy step: small energies, moderate loss, noisy samples, good accuracy."""
    g = torch.Generator().manual_seed(seed)

    def t(x: torch.Tensor) -> torch.Tensor:
        return x.to(device)

    return dict(
        generative_loss=t(torch.tensor(0.3)),
        loss=t(torch.tensor(1.2)),
        energies={"clean": t(-5 + torch.randn(16, generator=g)),
                  "adversarial": t(-4 + torch.randn(16, generator=g)),
                  "generated": t(-3 + torch.randn(16, generator=g))},
        generated=t(torch.rand(16, 1, 8, 8, generator=g) * 0.98 + 0.01),
        acc=t(torch.tensor(0.8)),
    )


def run_window(mon: CollapseMonitor, steps: int = 5, bad_step: int = 2, start: int = 1, **bad) -> list[Alarm]:
    """`steps` healthy updates, the one at `bad_step` with `bad` substituted; then check."""
    for i in range(steps):
        kw = healthy(mon.device, seed=start + i)
        if i == bad_step:
            kw.update(bad)
        mon.update(step=start + i, **kw)
    return mon.check(start + steps - 1)


def detectors(alarms: list[Alarm]) -> list[str]:
    return [a.detector for a in alarms]


def test_healthy_window_has_no_alarm():
    assert run_window(make()) == []


def test_nothing_updated_gives_no_alarm():
    assert make().check(10) == []


def test_due_every_check_every_steps():
    mon = make(check_every=4)
    assert [s for s in range(1, 13) if mon.due(s)] == [4, 8, 12]


def test_nan_loss_gives_exactly_one_nonfinite_alarm_with_the_policy():
    alarms = run_window(make(nonfinite="stop"), loss=torch.tensor(float("nan")))
    assert detectors(alarms) == ["nonfinite"]
    assert alarms[0].policy == "stop"
    assert "loss" in alarms[0].values and "loss" in alarms[0].message


def test_nan_generative_loss_is_not_also_a_loss_magnitude_alarm():
    alarms = run_window(make(), generative_loss=torch.tensor(float("nan")))
    assert detectors(alarms) == ["nonfinite"]
    assert alarms[0].policy == "rollback"
    assert set(alarms[0].values) == {"generative_loss"}


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_nonfinite_energy_gives_one_nonfinite_alarm(bad: float):
    e = -3 + torch.zeros(16)
    e[5] = bad
    alarms = run_window(make(nonfinite="warn"), energies={"clean": -5 + torch.zeros(16), "generated": e})
    assert detectors(alarms) == ["nonfinite"]  # no bogus 'energy' or 'gap' alarm from the inf
    assert alarms[0].policy == "warn"
    assert set(alarms[0].values) == {"energy:generated"}


def test_energy_above_limit_fires_and_below_does_not():
    big = {"clean": torch.full((16,), -5.0), "generated": torch.full((16,), -2e4)}
    alarms = run_window(make(energy="stop", gap_limit=1e9), energies=big)
    assert detectors(alarms) == ["energy"]
    assert alarms[0].policy == "stop"
    assert alarms[0].values["generated"] == pytest.approx(2e4)
    assert "generated" in alarms[0].message and "2e+04" in alarms[0].message
    below = {"clean": torch.full((16,), -5.0), "generated": torch.full((16,), -0.9e4)}
    assert run_window(make(gap_limit=1e9), energies=below) == []


def test_energy_overflowing_to_inf_in_the_mean_still_fires_energy():
    e = torch.full((16,), 3e38)  # finite values whose mean |E| overflows float32
    alarms = run_window(make(gap_limit=1e40), energies={"generated": e})
    assert detectors(alarms) == ["energy"]
    assert math.isfinite(alarms[0].values["generated"])


def test_large_generative_loss_fires_loss():
    alarms = run_window(make(), generative_loss=torch.tensor(-2e5))
    assert detectors(alarms) == ["loss"]
    assert alarms[0].values["value"] == pytest.approx(2e5)
    assert run_window(make(), generative_loss=torch.tensor(-0.5e5)) == []


def test_gap_between_clean_and_generated_fires_gap():
    gap = {"clean": torch.full((16,), -500.0), "generated": torch.full((16,), 700.0)}
    alarms = run_window(make(), energies=gap)
    assert detectors(alarms) == ["gap"]
    assert alarms[0].policy == "warn"
    assert alarms[0].values["value"] == pytest.approx(1200.0)
    close = {"clean": torch.full((16,), -500.0), "generated": torch.full((16,), 400.0)}
    assert run_window(make(), energies=close) == []


def test_saturated_samples_fire_saturation_and_uniform_noise_does_not():
    saturated = (torch.rand(16, 1, 8, 8) > 0.5).float()  # every pixel exactly 0 or 1
    alarms = run_window(make(), generated=saturated)
    assert detectors(alarms) == ["saturation"]
    assert alarms[0].values["value"] == pytest.approx(1.0)
    near = saturated * (1 - 2e-7) + 1e-7  # within 1e-6 of the bounds, as a clip leaves them
    assert detectors(run_window(make(), generated=near)) == ["saturation"]
    assert run_window(make(), generated=torch.rand(16, 1, 8, 8)) == []


def test_chance_accuracy_fires_only_after_chance_after():
    def window(step0: int) -> list[Alarm]:
        mon = make(chance_after=100)
        for s in range(step0, step0 + 5):
            mon.update(step=s, **{**healthy(), "acc": torch.tensor(0.1)})
        return mon.check(step0 + 4)

    assert window(10) == []
    alarms = window(100)
    assert detectors(alarms) == ["chance"]
    assert alarms[0].values["acc"] == pytest.approx(0.1)


def test_chance_uses_the_window_mean_and_per_sample_correctness():
    mon = make()
    # Per-sample correctness: 0.0 then 0.5 -> window mean 0.25, above 0.1 + 0.02.
    for correct in (torch.zeros(8, dtype=torch.bool), torch.arange(8) % 2 == 0):
        mon.update(step=1, **{**healthy(), "acc": correct})
    assert mon.check(2) == []
    mon.update(step=3, **{**healthy(), "acc": torch.zeros(8, dtype=torch.bool)})
    assert detectors(mon.check(3)) == ["chance"]


def test_no_acc_skips_chance():
    mon = make()
    mon.update(step=1, **{**healthy(), "acc": None})
    assert mon.check(1) == []


def test_accumulators_reset_after_check():
    mon = make()
    bad = run_window(mon, loss=torch.tensor(float("nan")), generative_loss=torch.tensor(1e9),
                     energies={"clean": torch.full((4,), -1e6), "generated": torch.full((4,), 1e6)})
    assert set(detectors(bad)) == {"nonfinite", "energy", "loss", "gap"}
    assert run_window(mon, start=6) == []


def test_reset_clears_a_bad_window():
    mon = make()
    mon.update(step=1, **{**healthy(), "loss": torch.tensor(float("nan"))})
    mon.reset()
    mon.update(step=2, **healthy())
    assert mon.check(2) == []


def test_decide_picks_the_strongest_policy():
    def a(policy: str) -> Alarm:
        return Alarm("gap", policy, "", {})

    assert decide([]) == "none"
    assert decide([a("warn")]) == "warn"
    assert decide([a("warn"), a("stop")]) == "stop"
    assert decide([a("stop"), a("rollback"), a("warn")]) == "rollback"
    assert decide([a("rollback"), a("stop")]) == "rollback"


def test_rollback_budget_counts_runs_out_and_round_trips():
    budget = RollbackBudget(2)
    assert budget.take() and budget.used == 1
    assert budget.take() and budget.used == 2
    assert not budget.take() and budget.used == 2
    restored = RollbackBudget(2)
    restored.load_state_dict(budget.state_dict())
    assert restored.used == 2 and not restored.take()
    assert not RollbackBudget(0).take()


def test_resolve_action_turns_rollback_into_stop_when_budget_is_spent():
    alarms = [Alarm("nonfinite", "rollback", "", {})]
    budget = RollbackBudget(1)
    assert resolve_action(alarms, budget) == "rollback"
    assert resolve_action(alarms, budget) == "stop"
    assert resolve_action([Alarm("gap", "warn", "", {})], budget) == "warn"


def test_collapse_epoch_is_the_first_stop_or_rollback():
    eco = None
    for epoch, action in [(1, "none"), (2, "warn"), (3, "rollback"), (4, "stop")]:
        eco = record_collapse_epoch(eco, action, epoch)
    assert eco == 3
    assert record_collapse_epoch(None, "warn", 5) is None


def test_the_guard_the_trainer_uses_decides_with_the_budget_and_records_the_collapse_epoch():
    """The engine's one collapse decision (CollapseGuard.check) goes through resolve_action and
    record_collapse_epoch: a rollback while budget lasts, then a stop; ECO = the first of them."""
    cfg = attrs.evolve(CollapseConfig(check_every=1, chance_after=0, max_rollbacks=1), nonfinite="rollback")
    guard = CollapseGuard(cfg, N_CLASSES, CPU)
    nan = torch.tensor(float("nan"))

    def step(i: int) -> None:
        guard.update(step=i, generative_loss=nan, loss=nan, energies={}, generated=None, acc=None)

    step(1)
    action, alarms = guard.check(1, 1.25)
    assert action == "rollback" and alarms[0].detector == "nonfinite" and guard.collapse_epoch == 1.25
    guard.reset()
    step(2)
    action, _ = guard.check(2, 2.0)
    assert action == "stop" and guard.rollbacks.used == 1 and guard.collapse_epoch == 1.25
    # another rank's detectors fired: this rank agrees and reports it as such
    quiet = CollapseGuard(cfg, N_CLASSES, CPU)
    quiet.update(step=1, generative_loss=torch.tensor(0.0), loss=torch.tensor(0.0), energies={},
                 generated=None, acc=None)
    action, alarms = quiet.check(1, 0.25, agree=lambda own: "stop")
    assert action == "stop" and [a.detector for a in alarms] == ["other_rank"] and quiet.collapse_epoch == 0.25


def test_update_never_reads_a_tensor_on_the_host(monkeypatch: pytest.MonkeyPatch):
    mon = make()
    kw = {**healthy(), "loss": torch.tensor(float("nan"))}

    def forbidden(*_a, **_k):
        raise AssertionError("host read of a tensor inside update()")

    with monkeypatch.context() as m:
        for name in ("item", "__bool__", "tolist", "__float__", "__int__", "numpy"):
            m.setattr(torch.Tensor, name, forbidden)
        mon.update(step=1, **kw)
        mon.update(step=2, **healthy())
        with pytest.raises(AssertionError, match="host read"):  # the patch is effective
            bool(torch.tensor(True))
    assert detectors(mon.check(2)) == ["nonfinite"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_update_does_not_synchronise_cuda():
    dev = torch.device("cuda")
    mon = make(dev)
    kw = {**healthy(dev), "loss": torch.tensor(float("nan"), device=dev)}
    mon.update(step=1, **healthy(dev))  # warm-up outside the debug mode
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        mon.update(step=2, **kw)
        mon.update(step=3, **healthy(dev))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert detectors(mon.check(3)) == ["nonfinite"]
