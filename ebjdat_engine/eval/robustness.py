"""Robust accuracy by the standard protocol: PGD-k and AutoAttack on [0, 1] images -> logits.

The model is evaluated in eval mode as a plain function from [0, 1] images to logits (every
ebjdat model normalises internally), which is exactly what AutoAttack expects (ALGORITHMS.md
§8.1). AutoAttack comes from fra31's `autoattack` package when it is importable, else from
PyPI's `pyautoattack` (fra31's APGD, FAB and Square unchanged). Its own checks (randomness,
output range, dynamic graphs, number of classes) stay on; their warnings are recorded.
"""

from __future__ import annotations

import logging
from importlib import metadata
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import UserError
from ..samplers import pgd

STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")
KNOWN_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")


class EvalError(UserError):
    """An evaluation request that cannot be met; the message says what to change."""


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / max(len(x), 1)


def pgd_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 20,
                 step_size: float | None = None, norm: str = "linf", batch_size: int = 500) -> torch.Tensor:
    """PGD-k on CE with a uniform random start and projection every step (step ε/4 by default)."""
    step = eps / 4 if step_size is None else step_size
    model.eval()
    out = [pgd(model, x[i:i + batch_size], y[i:i + batch_size], norm=norm, eps=eps, step_size=step,
               steps=steps, random_start=True) for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else x.clone()


def pgd_protocol(eps: float, eps_text: str, steps: int, norm: str, n: int) -> dict[str, Any]:
    return {"attack": f"PGD-{steps}", "loss": "ce", "norm": norm, "eps": eps, "eps_text": eps_text,
            "units": "pixel [0, 1]", "step": eps / 4, "steps": steps, "random_start": True,
            "projection": "every step", "model_mode": "eval", "points": n}


def parse_attacks(text: str) -> tuple[str, list[str]]:
    """'standard' -> ('standard', the four); 'apgd-ce,apgd-t' -> ('custom', [...])."""
    if text.strip() == "standard":
        return "standard", list(STANDARD_ATTACKS)
    names = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in names if a not in KNOWN_ATTACKS]
    if not names or unknown:
        raise EvalError(f"--attacks {text!r}: use 'standard' or a comma list of {', '.join(KNOWN_ATTACKS)}")
    return "custom", names


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def robust_accuracies(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                      eps_text: str, attacks: str = "standard", norm: str = "linf",
                      pgd_steps: int = 20, seed: int = 0,
                      log: Any = None) -> tuple[dict[str, Any], torch.Tensor]:
    """Clean, PGD-k and AutoAttack accuracy of `model` on (x, y) with their protocols, and the
    PGD examples (the energy landscape reuses them). Shared by `ebjdat eval` and the robust
    evaluation during training."""
    version, attack_list = parse_attacks(attacks)
    say = log or (lambda _text: None)
    say(f"clean accuracy on {len(x)} points")
    clean = accuracy(model, x, y)
    say(f"PGD-{pgd_steps} at eps {eps_text} ({norm})")
    x_pgd = pgd_examples(model, x, y, eps=eps, steps=pgd_steps, norm=norm)
    say(f"AutoAttack ({version}: {', '.join(attack_list)}) at eps {eps_text}")
    x_aa, aa_protocol = autoattack_examples(model, x, y, eps=eps, norm=norm, attacks=attack_list,
                                            version=version, seed=seed)
    results = {"clean_acc": clean, "pgd_acc": accuracy(model, x_pgd, y),
               "aa_acc": accuracy(model, x_aa, y),
               "protocol": {"pgd": pgd_protocol(eps, eps_text, pgd_steps, norm, len(x)),
                            "autoattack": aa_protocol}}
    return results, x_pgd


def autoattack_package() -> tuple[str, Any]:
    """fra31's `autoattack` when importable, else `pyautoattack` (the same attacks)."""
    try:
        import autoattack  # type: ignore[import-not-found]

        return "autoattack (fra31, git)", autoattack
    except ImportError:
        pass
    try:
        import pyautoattack  # type: ignore[import-not-found]

        return f"pyautoattack {metadata.version('pyautoattack')}", pyautoattack
    except ImportError:
        raise EvalError("no AutoAttack: pip install pyautoattack (or fra31's autoattack from git)") from None


def autoattack_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                        norm: str = "linf", attacks: Sequence[str] = STANDARD_ATTACKS,
                        version: str = "standard", seed: int = 0,
                        batch_size: int = 500) -> tuple[torch.Tensor, dict[str, Any]]:
    """Adversarial examples from AutoAttack and its protocol record (package, attacks, checks)."""
    name, package = autoattack_package()
    model.eval()
    norm_name = {"linf": "Linf", "l2": "L2"}[norm]
    capture = _Capture()
    logger = logging.getLogger("auto-attack")
    logger.addHandler(capture)
    try:
        if name.startswith("pyautoattack"):
            kwargs: dict[str, Any] = dict(eps=eps, norm=norm_name, seed=seed, version=version,
                                          device=x.device)
            if version == "custom":
                kwargs["attacks"] = list(attacks)
            aa = package.AutoAttack(model, **kwargs)
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch_size)
        else:  # fra31's signature
            kwargs = dict(norm=norm_name, eps=eps, version=version, seed=seed, device=x.device,
                          verbose=False)
            if version == "custom":
                kwargs["attacks_to_run"] = list(attacks)
            aa = package.AutoAttack(model, **kwargs)
            x_adv = aa.run_standard_evaluation(x, y, bs=batch_size)
    finally:
        logger.removeHandler(capture)
    protocol = {"package": name, "version": version, "attacks": list(attacks), "norm": norm,
                "eps": eps, "units": "pixel [0, 1]", "points": len(x), "seed": seed,
                "model": "eval mode, [0, 1] images -> logits", "checks": capture.messages}
    return x_adv.detach(), protocol
