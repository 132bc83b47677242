"""Tests of ebjdat_engine.samplers: SGLD/PYLD (sign, units, step counts), frozen parameters and BN
mode, the replay buffer, the training attacks (ε-balls, objectives rising) and DAT's generative PGD
with its AUC curriculum. Tiny models on 8x8 images; the whole file runs in seconds on one thread."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ebjdat_engine.data import load_dataset
from ebjdat_engine.models import build_model, energy, free_energy
from ebjdat_engine.recipe.schema import DataConfig, ModelConfig
from ebjdat_engine.samplers import (
    AucCurriculum,
    ReplayBuffer,
    bn_mode,
    ebjdat_ascent,
    ebjdat_objective,
    frozen_params,
    generative_pgd,
    pgd,
    project,
    pyld,
    random_start,
    sgld,
    trades_attack,
    trades_kl,
)

torch.set_num_threads(1)

SHAPE = (1, 8, 8)


def tiny_model(norm: str = "none", seed: int = 0) -> nn.Module:
    """The width-1 CNN on 8x8 images, with a sharper head so that input gradients are not tiny."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch="cnn", width=1, norm=norm), SHAPE, 10)
    with torch.no_grad():
        model.head.weight.mul_(20.0)
        model.head.bias.normal_()
    return model


def images(n: int = 64, lo: float = 0.0, hi: float = 1.0, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand((n, *SHAPE), generator=g)


class CallCounter:
    """Counts forward calls of a module through a forward hook."""

    def __init__(self, module: nn.Module) -> None:
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *_args) -> None:
        self.calls += 1


class LinearScore(nn.Module):
    """One logit ``scale · Σ_j w_j x_j``: ∂f/∂x = scale·w exactly (f = logsumexp of one logit)."""

    def __init__(self, w: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w.flatten().clone())
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x.flatten(1) @ self.w)[:, None]


def mean_energy(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return energy(model(x)).mean()


# ----------------------------------------------------------------------------- SGLD


def test_sgld_step_without_noise_lowers_energy() -> None:
    model, x0 = tiny_model(), images()
    e0 = energy(model(x0)).detach()
    x1 = sgld(model, x0, n_steps=1, step_size=1.0, noise_std=0.0, grad_clamp=1.0, input_std=0.5)
    e1 = energy(model(x1)).detach()
    assert e1.mean() < e0.mean() - 1e-3
    assert (e1 < e0).float().mean() > 0.9
    x5 = sgld(model, x0, n_steps=5, step_size=1.0, noise_std=0.0, grad_clamp=1.0, input_std=0.5)
    assert mean_energy(model, x5) < e1.mean()
    assert x1.dtype == torch.float32 and not x1.requires_grad


def test_sgld_with_noise_stays_in_unit_range_only_when_clipping() -> None:
    model, x0 = tiny_model(), images()
    kw = dict(n_steps=3, step_size=1.0, noise_std=0.5, grad_clamp=1.0, input_std=0.5)
    x = sgld(model, x0, **kw)
    assert x.min() >= 0.0 and x.max() <= 1.0
    unclipped = sgld(model, x0, clip=False, **kw)
    assert unclipped.min() < 0.0 or unclipped.max() > 1.0


@pytest.mark.parametrize("n_steps", [0, 1, 7])
def test_sgld_does_n_steps_forwards(n_steps: int) -> None:
    model, x0 = tiny_model(), images(8)
    counter = CallCounter(model)
    x = sgld(model, x0, n_steps=n_steps, step_size=1.0, noise_std=0.01, grad_clamp=0.0, input_std=0.5)
    assert counter.calls == n_steps
    assert torch.equal(x, x0) == (n_steps == 0)


@pytest.mark.parametrize("input_std", [0.5, 0.25])
def test_sgld_clamped_step_is_step_size_times_input_std_in_pixels(input_std: float) -> None:
    w = torch.where(torch.rand(SHAPE) < 0.5, -1.0, 1.0)
    model = LinearScore(w, scale=1e6)  # |∂f/∂x_n| = input_std·1e6 >> the clamp
    x0 = torch.full((4, *SHAPE), 0.5)
    x1 = sgld(model, x0, n_steps=1, step_size=0.2, noise_std=0.0, grad_clamp=1.0, input_std=input_std)
    expected = x0 + 0.2 * input_std * w  # Δx = std·α·clamp(g_n) = std·α·sign(w)
    torch.testing.assert_close(x1, expected.expand_as(x1), atol=1e-6, rtol=0)


def test_sgld_noise_is_in_normalised_units() -> None:
    model = LinearScore(torch.zeros(SHAPE), scale=1.0)  # zero gradient: only the noise moves x
    x0 = torch.full((256, *SHAPE), 0.5)
    x1 = sgld(model, x0, n_steps=1, step_size=1.0, noise_std=0.02, grad_clamp=0.0, input_std=0.5)
    assert abs((x1 - x0).std().item() - 0.01) < 0.0005  # σ_pixel = input_std · σ


def test_sgld_under_bf16_autocast_returns_fp32_in_range() -> None:
    model, x0 = tiny_model(), images(16)
    x = sgld(model, x0, n_steps=2, step_size=1.0, noise_std=0.01, grad_clamp=1.0, input_std=0.5,
             autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert x.dtype == torch.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert mean_energy(model, x) < mean_energy(model, x0)


# ----------------------------------------------------------------------------- PYLD


def test_pyld_lowers_energy_stays_in_range_and_does_m_passes() -> None:
    model, x0 = tiny_model(), images()
    heads, stems = CallCounter(model.head), CallCounter(model.stem)
    x = pyld(model, x0, n_steps=4, inner_steps=5, inner_step=0.2, grad_clamp=1.0, input_std=0.5)
    assert heads.calls == 4                 # M full forward/backward passes
    assert stems.calls == 4                 # and no stem-only pass: the inner steps reuse ∇_x H
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert mean_energy(model, x) < mean_energy(model, x0) - 1e-2
    assert not x.requires_grad and x.dtype == torch.float32


def test_pyld_single_step_equals_clamped_sgld_step() -> None:
    """∇_x Σ stem(x)⊙p = ∇_x Σ f(x): one PYLD-1-1 step is one clamped SGLD step."""
    model, x0 = tiny_model(), images(16, 0.3, 0.7)
    a = pyld(model, x0, n_steps=1, inner_steps=1, inner_step=0.05, grad_clamp=1.0, input_std=0.5)
    b = sgld(model, x0, n_steps=1, step_size=0.05, noise_std=0.0, grad_clamp=1.0, input_std=0.5)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert (a - x0).abs().max() > 1e-4


def test_pyld_inner_steps_repeat_a_constant_step() -> None:
    """The stem is affine, so N inner steps of η equal one step of N·η while no clip binds."""
    model, x0 = tiny_model(), images(16, 0.3, 0.7)
    five = pyld(model, x0, n_steps=1, inner_steps=5, inner_step=0.02, grad_clamp=1.0, input_std=0.5)
    one = pyld(model, x0, n_steps=1, inner_steps=1, inner_step=0.1, grad_clamp=1.0, input_std=0.5)
    torch.testing.assert_close(five, one, atol=1e-5, rtol=0)


def literal_pyld(model, x0, *, n_steps, inner_steps, inner_step, grad_clamp, input_std):
    """JEM++'s PYLD as its reference code writes it: the co-state p at the stem output, then N
    stem forwards and backwards of H(x) = Σ stem(normalize(x)) ⊙ p, a clip after each."""
    x = x0.detach().clone()
    with frozen_params(model):
        for _ in range(n_steps):
            with torch.no_grad():
                h = model.stem(model.normalize(x))
            h = h.detach().requires_grad_(True)
            (p,) = torch.autograd.grad(free_energy(model.forward_from_stem(h)).sum(), h)
            for _ in range(inner_steps):
                x = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad((model.stem(model.normalize(x)) * p).sum(), x)
                g = (g * input_std).clamp(-grad_clamp, grad_clamp)
                x = (x.detach() + input_std * inner_step * g).clamp_(0.0, 1.0)
    return x.detach()


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_pyld_equals_the_literal_inner_loop(mode: str) -> None:
    """One input gradient of the whole network per outer step gives the reference's trajectory:
    the same samples as N stem forwards/backwards of H, with clips that bind (large η) and
    BatchNorm in either mode (train mode: the running statistics move identically too)."""
    torch.manual_seed(0)
    model, x0 = tiny_model(norm="batch"), images(16)
    twin = copy.deepcopy(model)
    model.train(mode == "train"), twin.train(mode == "train")
    kw = dict(n_steps=3, inner_steps=4, inner_step=0.3, grad_clamp=1.0, input_std=0.5)
    ours, theirs = pyld(model, x0, **kw), literal_pyld(twin, x0, **kw)
    assert ((ours == 0) | (ours == 1)).float().mean() > 0.01        # the clip binds somewhere
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    for a, b in zip(model.buffers(), twin.buffers()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


# ----------------------------------------------------------------------------- frozen params, BN mode


def test_samplers_and_attacks_leave_no_param_grads_and_restore_requires_grad() -> None:
    model, x = tiny_model(), images(8)
    y = torch.arange(8) % 10
    model.head.bias.requires_grad_(False)  # a mixed state must come back as it was
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    sgld(model, x, n_steps=2, step_size=1.0, noise_std=0.01, grad_clamp=1.0, input_std=0.5)
    pyld(model, x, n_steps=2, inner_steps=2, inner_step=0.2, grad_clamp=1.0, input_std=0.5)
    pgd(model, x, y, eps=0.03, step_size=0.01, steps=2)
    trades_attack(model, x, eps=0.03, step_size=0.01, steps=2)
    ebjdat_ascent(model, x, y, eps=0.03, step_size=0.01, steps=2)
    generative_pgd(model, x, y, steps=2, step_size=0.1)
    assert all(p.grad is None for p in model.parameters())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before


def test_frozen_params_freezes_inside_and_restores_on_error() -> None:
    model = tiny_model()
    with pytest.raises(RuntimeError):
        with frozen_params(model):
            assert not any(p.requires_grad for p in model.parameters())
            raise RuntimeError("boom")
    assert all(p.requires_grad for p in model.parameters())


def test_bn_mode_sets_and_restores_each_module() -> None:
    model = tiny_model(norm="batch")
    model.train()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    bn.eval()  # one submodule in its own mode
    with bn_mode(model, "eval"):
        assert not any(m.training for m in model.modules())
    assert model.training and not bn.training
    model.eval()
    with bn_mode(model, "train"):
        assert all(m.training for m in model.modules())
    assert not any(m.training for m in model.modules())
    with pytest.raises(ValueError):
        with bn_mode(model, "inference"):
            pass


# ----------------------------------------------------------------------------- replay buffer


@pytest.mark.parametrize("reinit_freq", [0.0, 0.2, 1.0])
def test_buffer_reinit_fraction_matches_reinit_freq(reinit_freq: float) -> None:
    torch.manual_seed(0)
    buf = ReplayBuffer(100, SHAPE, "cpu", init="uniform", reinit_freq=reinit_freq)
    buf.buffer.fill_(2.0)  # a value no uniform init draw can take
    x0, idx = buf.sample(5000)
    assert x0.shape == (5000, *SHAPE) and idx.shape == (5000,)
    assert idx.min() >= 0 and idx.max() < 100
    fresh = (x0 != 2.0).flatten(1).all(dim=1).float().mean().item()
    # binomial sd at p = 0.2, n = 5000 is 0.0057: ±0.03 is more than 5 sd
    assert abs(fresh - reinit_freq) < 0.03


def test_buffer_update_writes_back_and_state_dict_round_trips() -> None:
    torch.manual_seed(0)
    buf = ReplayBuffer(50, SHAPE, "cpu", init="uniform", reinit_freq=0.05)
    assert buf.buffer.shape == (50, *SHAPE) and buf.buffer.dtype == torch.float32
    assert 0.0 <= buf.buffer.min() and buf.buffer.max() <= 1.0
    _, idx = buf.sample(10)
    idx = torch.unique(idx)
    new = torch.full((len(idx), *SHAPE), 0.25)
    buf.update(idx, new)
    assert torch.equal(buf.buffer[idx], new)
    state = buf.state_dict()
    other = ReplayBuffer(50, SHAPE, "cpu", init="uniform", reinit_freq=0.05)
    assert not torch.equal(other.buffer, buf.buffer)
    other.load_state_dict(state)
    assert torch.equal(other.buffer, buf.buffer)
    buf.update(idx, torch.zeros_like(new))  # the saved state is a copy, not a view
    assert torch.equal(state["buffer"][idx], new)
    with pytest.raises(ValueError):
        ReplayBuffer(49, SHAPE, "cpu", init="uniform", reinit_freq=0.05).load_state_dict(state)


def test_buffer_reinitialize_changes_content() -> None:
    torch.manual_seed(0)
    buf = ReplayBuffer(50, SHAPE, "cpu", init="uniform", reinit_freq=0.05)
    before = buf.buffer.clone()
    buf.reinitialize()
    assert (buf.buffer != before).flatten(1).any(dim=1).all()
    assert 0.0 <= buf.buffer.min() and buf.buffer.max() <= 1.0


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(name="digits"), torch.device("cpu"), seed=0)


def test_class_gaussian_draws_match_class_means(digits) -> None:
    torch.manual_seed(0)
    train = digits.train
    buf = ReplayBuffer(200, digits.image_shape, "cpu", init="class_gaussian", reinit_freq=0.05,
                       train_images=train.images, train_labels=train.labels, n_classes=10)
    x = train.images.float() / 255.0
    means = torch.stack([x[train.labels == c].mean(0) for c in range(10)])
    for c in range(10):
        draws = buf.class_draws(torch.full((2000,), c))
        assert draws.min() >= 0.0 and draws.max() <= 1.0
        gap = (draws.mean(0) - means[c]).abs()
        others = (means - means[c]).abs().flatten(1).max(dim=1).values
        assert gap.max() < 0.1  # the clip at [0, 1] biases near-zero pixels slightly
        assert gap.max() < others[torch.arange(10) != c].min() / 3  # closer than any other class
    # the initial buffer is class-balanced draws: its mean is the mean of the class means
    assert (buf.buffer.mean(0) - means.mean(0)).abs().max() < 0.1
    fresh = buf.init_draws(500)
    assert fresh.shape == (500, *digits.image_shape)


def test_data_noise_init_draws_near_training_images(digits) -> None:
    torch.manual_seed(0)
    buf = ReplayBuffer(100, digits.image_shape, "cpu", init="data_noise", reinit_freq=0.05,
                       train_images=digits.train.images, data_noise_std=0.01)
    x = digits.train.images.float().flatten(1) / 255.0
    nearest = torch.cdist(buf.buffer.flatten(1), x).min(dim=1).values
    assert nearest.max() < 0.2  # ‖noise‖ ≈ 0.01·√64 = 0.08
    with pytest.raises(ValueError):
        ReplayBuffer(10, digits.image_shape, "cpu", init="class_gaussian", reinit_freq=0.05)


# ----------------------------------------------------------------------------- attacks


def linf(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).abs().max(dim=1).values


def l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).norm(dim=1)


def ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


@pytest.mark.parametrize("norm,eps,step", [("linf", 8 / 255, 2 / 255), ("l2", 0.5, 0.1)])
def test_pgd_stays_in_ball_and_raises_ce(norm: str, eps: float, step: float) -> None:
    model, x = tiny_model(), images(64)
    y = model(x).argmax(1).detach()
    x_adv = pgd(model, x, y, norm=norm, eps=eps, step_size=step, steps=10)
    dist = linf(x_adv, x) if norm == "linf" else l2(x_adv, x)
    assert dist.max() <= eps + 1e-5
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    noise = project(x + torch.randn_like(x), x, eps, norm)  # a random point on the ball's surface
    assert ce(model, x_adv, y) > ce(model, noise, y) + 0.1
    assert ce(model, x_adv, y) > ce(model, x, y) + 0.1
    assert torch.equal(pgd(model, x, y, norm=norm, eps=0.0, step_size=step, steps=3), x)


def test_project_l2_rescales_and_clips() -> None:
    x = torch.full((3, *SHAPE), 0.5)
    far = x + torch.randn_like(x) * 0.3
    p = project(far, x, 0.2, "l2")
    torch.testing.assert_close(l2(p, x), torch.full((3,), 0.2), atol=1e-5, rtol=0)  # no clip binds
    inside = x + 0.01 * torch.randn_like(x)  # ‖δ‖ ≈ 0.08 < 0.2: left where it is
    torch.testing.assert_close(project(inside, x, 0.2, "l2"), inside, atol=1e-7, rtol=0)
    p = project(x + 5.0, x, 100.0, "linf")
    assert p.max() == 1.0


def test_random_starts_lie_in_the_ball() -> None:
    torch.manual_seed(0)
    x = torch.full((2000, *SHAPE), 0.5)
    r = l2(random_start(x, 0.5, "l2"), x)
    assert r.max() <= 0.5 + 1e-5 and abs(r.mean().item() - 0.25) < 0.02  # radius ~ U(0, ε)
    d = random_start(x, 0.1, "linf") - x
    assert d.abs().max() <= 0.1 + 1e-6 and abs(d.abs().mean().item() - 0.05) < 0.005
    model = tiny_model()
    start = trades_attack(model, x[:64], eps=0.1, step_size=0.01, steps=0)  # x + 0.001·N(0, I)
    assert 0.0005 < (start - x[:64]).std().item() < 0.002


def test_ebjdat_ascent_projected_stays_in_ball() -> None:
    model, x = tiny_model(), images(64)
    y = torch.arange(64) % 10
    eps = 4 / 255
    x_adv = ebjdat_ascent(model, x, y, eps=eps, step_size=1 / 255, steps=10, project=True)
    assert linf(x_adv, x).max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_ebjdat_ascent_unprojected_leaves_ball_within_step_budget() -> None:
    """The released code has no ε-ball: only ε + K·α bounds x̃ (ALGORITHMS.md §4.2)."""
    model, x = tiny_model(), images(64, 0.2, 0.8)
    y = torch.arange(64) % 10
    eps, step, steps = 4 / 255, 1 / 255, 5
    x_adv = ebjdat_ascent(model, x, y, eps=eps, step_size=step, steps=steps, project=False)
    dist = linf(x_adv, x)
    assert dist.max() > eps + step  # well outside the ball
    assert dist.max() <= eps + steps * step + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("objective", ["logit_cosine", "ce_cosine"])
def test_ebjdat_ascent_increases_its_objective(objective: str) -> None:
    model, x = tiny_model(), images(64)
    y = torch.arange(64) % 10
    with torch.no_grad():
        ref = model(x)
    x_adv = ebjdat_ascent(model, x, y, eps=8 / 255, step_size=2 / 255, steps=5, objective=objective,
                          random_start=False)
    with torch.no_grad():
        logits = model(x_adv)
        j0 = ebjdat_objective(ref, ref, y, objective).item()
        j1 = ebjdat_objective(logits, ref, y, objective).item()
        first = (logits.gather(1, y[:, None]).sum() if objective == "logit_cosine"
                 else F.cross_entropy(logits, y, reduction="sum"))
        d = (F.normalize(ref, dim=1) - F.normalize(logits, dim=1)).pow(2).sum()
    torch.testing.assert_close(torch.tensor(j1), first + d)  # J = first term + D, written out
    assert j1 > j0 + 0.5


def test_trades_attack_stays_in_ball_and_raises_kl() -> None:
    model, x = tiny_model(), images(64)
    eps = 8 / 255
    x_adv = trades_attack(model, x, eps=eps, step_size=2 / 255, steps=10)
    assert linf(x_adv, x).max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    with torch.no_grad():
        p = F.softmax(model(x), dim=1)
        kl_adv = trades_kl(model(x_adv), p).item()
        corner = project(x + eps * torch.randn_like(x).sign(), x, eps, "linf")
        kl_rand = trades_kl(model(corner), p).item()
    assert kl_adv > 3 * kl_rand and kl_adv > 0.1


# ----------------------------------------------------------------------------- DAT


def test_generative_pgd_raises_class_logit() -> None:
    model, seeds = tiny_model(), images(64)
    y = torch.arange(64) % 10
    x = generative_pgd(model, seeds, y, steps=5, step_size=0.1)
    with torch.no_grad():
        before = model(seeds).gather(1, y[:, None]).squeeze(1)
        after = model(x).gather(1, y[:, None]).squeeze(1)
    assert (after > before).float().mean() > 0.9
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert l2(x, seeds).max() <= 5 * 0.1 + 1e-5  # unit-norm steps of size α
    assert torch.equal(generative_pgd(model, seeds, y, steps=0, step_size=0.1), seeds)


def test_auc_curriculum_advances_only_after_window_of_high_auc() -> None:
    cur = AucCurriculum(max_steps=2, threshold=0.8, window=100, device="cpu")
    real, neg = torch.full((32,), 5.0), torch.zeros(32)  # AUC = 1
    for _ in range(3):  # 96 images < window
        cur.update(real, neg)
        assert not cur.advance() and cur.steps == 0
    cur.update(real, neg)
    assert cur.advance() and cur.steps == 1
    assert not cur.advance()  # the window restarted
    for _ in range(8):
        cur.update(real, neg)
    assert cur.advance() and cur.steps == 2
    for _ in range(8):
        cur.update(real, neg)
    assert not cur.advance() and cur.steps == 2  # capped at max_steps


def test_auc_curriculum_holds_when_auc_is_low() -> None:
    cur = AucCurriculum(max_steps=5, threshold=0.8, window=64, device="cpu")
    for _ in range(10):
        cur.update(torch.zeros(32), torch.ones(32))  # AUC = 0
        cur.advance()
    assert cur.steps == 0
    cur.update(torch.ones(64), torch.ones(64))  # all ties: AUC = 0.5 < 0.8
    assert cur.mean_auc() == 0.5
    assert not cur.advance()
    # real {1, 3} vs neg {2, 0}: 3 of the 4 pair types have real > neg, so AUC = 0.75
    cur.update(torch.tensor([1.0, 3.0] * 32), torch.tensor([2.0, 0.0] * 32))
    assert abs(cur.mean_auc() - 0.75) < 1e-6
    assert not cur.advance() and cur.steps == 0


def test_auc_curriculum_state_dict_round_trip() -> None:
    cur = AucCurriculum(max_steps=5, threshold=0.8, window=100, device="cpu")
    for _ in range(4):
        cur.update(torch.ones(32), torch.zeros(32))
    cur.advance()
    cur.update(torch.ones(32), torch.zeros(32))
    other = AucCurriculum(max_steps=5, threshold=0.8, window=100, device="cpu")
    other.load_state_dict(cur.state_dict())
    assert other.steps == 1 and other.mean_auc() == 1.0
    for c in (cur, other):
        for _ in range(3):
            c.update(torch.ones(32), torch.zeros(32))
    assert cur.advance() and other.advance() and other.steps == cur.steps == 2


def test_autocast_factory_wraps_every_forward() -> None:
    entered = []

    @contextlib.contextmanager
    def spy():
        entered.append(1)
        yield

    model, x = tiny_model(), images(4)
    sgld(model, x, n_steps=3, step_size=1.0, noise_std=0.0, grad_clamp=1.0, input_std=0.5, autocast=spy)
    assert len(entered) == 3
