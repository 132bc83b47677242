"""The eval-mode energy probe and the generation trace (monitor/probe.py, monitor/generation.py):
eval mode really used, a fixed probe, `ebjdat eval`'s protocol, the training run left untouched,
and the events a tiny digits run writes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ebjdat_engine.eval.generation import draw_buffer
from ebjdat_engine.eval.landscape import energies
from ebjdat_engine.eval.robustness import pgd_examples
from ebjdat_engine.models import energy
from ebjdat_engine.monitor.generation import GenerationTrace
from ebjdat_engine.monitor.probe import EnergyProbe, heldout_split
from ebjdat_engine.monitor.sample_source import GeneratedSource, seeded
from ebjdat_engine.recipe import DataConfig, MonitorConfig, resolve
from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.samplers import ReplayBuffer
from ebjdat_engine.train.session import run

torch.set_num_threads(1)
EPS = 8 / 255


class BNNet(nn.Module):
    """Conv -> BatchNorm -> linear head, with running statistics far from any batch's own."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 8 * 8, 10)
        with torch.no_grad():
            self.head.weight.normal_(0.0, 0.3)
            self.bn.running_mean.fill_(-0.5)
            self.bn.running_var.fill_(0.05)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))


def probe_data(n: int = 40):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)
    return images, labels


def make_probe(n: int = 24, steps: int = 3) -> tuple[EnergyProbe, torch.Tensor, torch.Tensor]:
    images, labels = probe_data()
    cfg = MonitorConfig(probe_n=n, probe_attack_steps=steps, bins=20, energy_range=[-60.0, 20.0])
    return EnergyProbe(cfg, images, labels, "test", eps=EPS, eps_text="8/255"), images, labels


def test_probe_measures_in_eval_mode_and_leaves_the_model_as_it_was():
    model = BNNet().train()
    probe, images, _ = make_probe()
    x = images[:probe.n].float() / 255
    gen = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        train_mean = energy(model(x)).mean().item()          # batch statistics
    bn_before = {k: v.clone() for k, v in model.bn.state_dict().items()}
    model.train()
    out = probe.measure(model, (gen, {"source": "test"}))
    with torch.no_grad():
        eval_e = energy(model.eval()(x))
        eval_gen = energy(model(gen))
    model.train()
    clean = out["populations"]["clean"]
    assert clean["mean"] == pytest.approx(eval_e.double().mean().item(), rel=1e-6)
    assert out["populations"]["generated"]["mean"] == pytest.approx(eval_gen.double().mean().item(), rel=1e-6)
    assert abs(clean["mean"] - train_mean) > 0.5  # train and eval mode really differ on this model
    # nothing changed: training flags, BatchNorm's running statistics, parameter flags and grads
    assert all(m.training for m in model.modules())
    for k, v in model.bn.state_dict().items():
        assert torch.equal(v, bn_before[k]), k
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    # the event block
    assert out["mode"] == "eval" and set(out["populations"]) == {"clean", "adversarial", "generated"}
    assert sum(clean["hist"]) == clean["n"] == probe.n and len(clean["hist"]) == 20
    assert out["gaps"]["clean_minus_adversarial"] == pytest.approx(
        clean["mean"] - out["populations"]["adversarial"]["mean"])
    assert out["probe"]["n"] == probe.n and out["probe"]["split"] == "test"
    assert out["probe"]["attack"] == "PGD-3 eps 8/255 linf" and out["probe"]["model_mode"] == "eval"


def test_probe_is_fixed_and_follows_ebjdat_evals_protocol_without_touching_the_rng():
    model = BNNet().train()
    probe, images, labels = make_probe(n=24, steps=4)
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    first = probe.measure(model, None)
    assert torch.equal(torch.get_rng_state(), rng)  # the training run's RNG stream is untouched
    second = probe.measure(model, None)
    assert first["populations"] == second["populations"]  # same images, same attack start
    assert "generated" not in first["populations"]
    # ebjdat eval: torch.manual_seed(seed 0), PGD examples, energies in eval mode
    x, y = images[:24].float() / 255, labels[:24]
    torch.manual_seed(0)
    x_pgd = pgd_examples(model, x, y, eps=EPS, steps=4)
    want = {"clean": energies(model, x), "adversarial": energies(model, x_pgd)}
    for pop, e in want.items():
        assert first["populations"][pop]["mean"] == pytest.approx(e.double().mean().item(), rel=1e-6), pop


def test_generated_samples_are_the_slots_ebjdat_eval_draws():
    buffer = ReplayBuffer(50, (1, 8, 8), "cpu", init="uniform", reinit_freq=0.0)
    method = SimpleNamespace(sampler=SimpleNamespace(buffer=buffer), populations=("clean", "generated"))
    source = GeneratedSource(method)
    x, info = source.take(20, None)
    run = SimpleNamespace(checkpoint={"method": {"sampler": {"buffer": {"buffer": buffer.buffer}}}})
    want, _ = draw_buffer(run, 20, seed=0)
    assert torch.equal(x, want) and info["source"] == "replay buffer"
    buffer.buffer.add_(1.0)  # the chains move on: the same slots, their new content
    assert torch.equal(source.take(20, None)[0], want + 1.0)
    # DAT-like: the latest negatives; no generator: nothing
    dat = GeneratedSource(SimpleNamespace(name="dat", populations=("clean", "adversarial", "generated")))
    latest = torch.rand(8, 1, 8, 8)
    assert torch.equal(dat.take(20, latest)[0], latest) and dat.take(20, None) is None
    assert dat.init_draws(5, latest)[0].shape == (5, 1, 8, 8)
    none = GeneratedSource(SimpleNamespace(name="pgd_at", populations=("clean", "adversarial")))
    assert not none.generates and none.take(20, latest) is None and none.init_draws(5, latest) is None


def test_seeded_restores_the_global_rng():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with seeded(torch.device("cpu")):
        inside = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(inside, torch.rand(3))  # as after manual_seed(0)
    torch.manual_seed(5)
    with seeded(torch.device("cpu")):
        torch.rand(100)
    assert torch.equal(torch.rand(3), expected)


def test_heldout_split_and_generation_trace_switches():
    images, labels = probe_data(10)
    split = type("Split", (), {"images": images, "labels": labels, "__len__": lambda self: 10})()
    splits = SimpleNamespace(valid=split, test=split, train=split)
    assert heldout_split(MonitorConfig(), splits)[0] == "test"
    assert heldout_split(MonitorConfig(probe_split="valid"), splits)[0] == "valid"
    assert heldout_split(MonitorConfig(probe_split="valid"), SimpleNamespace(valid=None, test=split))[0] == "test"
    buffer = ReplayBuffer(20, (1, 8, 8), "cpu", init="uniform", reinit_freq=0.0)
    jem = GeneratedSource(SimpleNamespace(sampler=SimpleNamespace(buffer=buffer), populations=("clean", "generated")))
    cpu = torch.device("cpu")
    assert GenerationTrace(MonitorConfig(), DataConfig(), splits, jem, cpu).enabled
    assert not GenerationTrace(MonitorConfig(), DataConfig(name="cifar10"), splits, jem, cpu).enabled
    assert not GenerationTrace(MonitorConfig(gen_every=0), DataConfig(), splits, jem, cpu).enabled
    pgd_at = GeneratedSource(SimpleNamespace(name="pgd_at", populations=("clean", "adversarial")))
    assert not GenerationTrace(MonitorConfig(), DataConfig(), splits, pgd_at, cpu).enabled


# --- a tiny run ---------------------------------------------------------------------------------

JEM = ["method.name=jem", "sampler.n_steps=2", "sampler.buffer_size=64", "train.px_batch_size=16",
       "train.batch_size=16", "train.max_steps=10", "train.log_every=5", "eval.every_epochs=0",
       "monitor.every=5", "monitor.samples_every=0"]


def test_a_tiny_run_writes_eval_mode_energies_and_a_generation_trace(tiny_recipe):
    from ebjdat_engine.eval.evaluate import evaluate

    on = run(resolve(tiny_recipe, JEM + ["monitor.probe_n=48", "monitor.probe_attack_steps=5",
                                         "monitor.gen_every=5", "monitor.gen_n=40", "run.name=on"]))
    off = run(resolve(tiny_recipe, JEM + ["monitor.probe_n=0", "monitor.gen_every=0", "run.name=off"]))
    assert on.status == off.status == "finished"
    ev_on, ev_off = read_events(on.run_dir), read_events(off.run_dir)
    # the measurements change nothing in training: the same losses, the same train-mode energies
    assert [e["loss"] for e in ev_on if e["type"] == "metrics"] == [e["loss"] for e in ev_off if e["type"] == "metrics"]
    train_on = [(e["step"], e["gaps"]) for e in ev_on if e["type"] == "energy"]
    assert train_on == [(e["step"], e["gaps"]) for e in ev_off if e["type"] == "energy"]
    assert [e["step"] for e in ev_on if e["type"] == "energy"] == [5, 10]

    energy_events = [e for e in ev_on if e["type"] == "energy"]
    for e in energy_events:
        assert e["mode"] == "train" and "clean" in e["populations"]  # the old keys, labelled
        block = e["eval_mode"]
        assert block["mode"] == "eval" and set(block["populations"]) == {"clean", "adversarial", "generated"}
        for pop in block["populations"].values():
            assert pop["n"] == 48 and sum(pop["hist"]) == 48 and len(pop["hist"]) == e["bins"]
        assert block["probe"]["split"] == "test" and block["probe"]["attack"] == "PGD-5 eps 8/255 linf"
        assert block["probe"]["generated"]["source"] == "replay buffer"
    assert all("eval_mode" not in e for e in ev_off if e["type"] == "energy")

    gen = [e for e in ev_on if e["type"] == "generation"]
    assert [e["step"] for e in gen] == [5, 10] and not [e for e in ev_off if e["type"] == "generation"]
    for e in gen:
        assert e["n"] == 40 and e["source"] == "replay buffer" and e["metric"] == "fd_ref"
        assert e["fd_ref"] > 0 and e["init_baseline"] > 0 and e["floor"] > 0
    assert "reference" in gen[0] and "reference" not in gen[1]  # the classifier is loaded once, and said so
    assert gen[0]["init_baseline"] == gen[1]["init_baseline"] and gen[0]["floor"] == gen[1]["floor"]
    assert gen[1]["floor"] < gen[1]["init_baseline"]  # real digits beat random init draws

    # the goal: at the checkpoint, the latest eval-mode gaps are those `ebjdat eval --n probe_n` reports
    result = evaluate(on.run_dir, ckpt="last", n=48, attacks="apgd-ce", fid="off", device="cpu", pgd_steps=5)
    assert result["checkpoint"]["step"] == energy_events[-1]["step"]
    live = energy_events[-1]["eval_mode"]["gaps"]
    for name, value in result["energy"]["gaps"].items():
        assert live[name] == pytest.approx(value, rel=0.1, abs=1e-6), name
        assert live[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name  # in fact the same numbers


def test_a_method_without_a_generator_probes_clean_and_adversarial_only(tiny_recipe):
    result = run(resolve(tiny_recipe, ["train.max_steps=5", "monitor.every=5", "monitor.probe_n=16",
                                       "monitor.probe_attack_steps=2", "monitor.gen_every=5",
                                       "eval.every_epochs=0"]))
    events = read_events(result.run_dir)
    (e,) = [e for e in events if e["type"] == "energy"]
    assert set(e["eval_mode"]["populations"]) == {"clean", "adversarial"}
    assert set(e["populations"]) == {"clean"}  # train mode: what the standard method computes
    assert not [e for e in events if e["type"] == "generation"]
