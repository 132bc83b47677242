"""The training loop: one `train_step` per iteration, bookkeeping at fixed cadences.

Read `train_step` against ALGORITHMS.md §11: the method computes its named loss terms, the loop
sums them with the recipe's weights, backpropagates and steps. Nothing in the step syncs with
the host: losses and statistics stay on the device and are copied out every `train.log_every`
(metrics) and `monitor.every` (energies) steps. Between steps the loop only checks Python flags
(signals) and, every `train.control_every` steps, the `control/` directory.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import DataSplits, DeviceLoader
from ..eval.clean import clean_accuracy
from ..methods import Batch, Method
from ..monitor.energy import EnergyMonitor
from ..recipe import Recipe, to_toml
from . import control
from .checkpoint import CHECKPOINT_DIR, load_checkpoint, rng_state, save_atomic, set_rng_state
from .events import EventWriter
from .optim import build_optimizer, build_schedule
from .runtime import autocast, grad_scaler

CHECKPOINT_FORMAT = 1


class Trainer:
    """Owns the model, optimizer, schedule, scaler and method for one run directory."""

    def __init__(self, recipe: Recipe, splits: DataSplits, model: nn.Module, method: Method,
                 device: torch.device, run_dir: Path, events: EventWriter):
        self.recipe = recipe
        self.splits = splits
        self.device = device
        self.run_dir = run_dir
        self.events = events
        self.model = model  # the module whose state is saved (never the compiled wrapper)
        self.forward_model = torch.compile(model) if recipe.runtime.compile else model
        self.method = method
        train = recipe.train
        self.loader = DeviceLoader(splits.train, train.batch_size, seed=recipe.run.seed,
                                   crop_padding=recipe.data.crop_padding, hflip=recipe.data.hflip,
                                   noise_std=recipe.data.noise_std)
        self.steps_per_epoch = self.loader.steps_per_epoch
        self.total_steps = train.epochs * self.steps_per_epoch
        if train.max_steps is not None:
            self.total_steps = min(self.total_steps, train.max_steps)
        self.optimizer = build_optimizer(recipe.optim, model.parameters())
        self.schedule = build_schedule(recipe.optim, self.optimizer, self.steps_per_epoch)
        self.scaler = grad_scaler(recipe.runtime, device)
        self.monitor = EnergyMonitor(recipe.monitor, device)
        self.step = 0
        self.best: dict[str, Any] = {}
        self._window: dict[str, torch.Tensor] = {}
        self._window_steps = 0
        self._last: dict[str, torch.Tensor] = {}
        self._clock = (time.perf_counter(), 0)
        self._last_eval_step = -1

    # --- the iteration --------------------------------------------------------------------

    def train_step(self, batch: Batch) -> None:
        """One iteration: named loss terms -> weighted sum -> backward -> optimizer step."""
        self.model.train()
        with autocast(self.recipe.runtime, self.device):
            out = self.method(self.forward_model, batch)
        loss = sum(self.method.weights[name] * term for name, term in out.terms.items())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        self._accumulate(loss.detach(), out.terms, out.stats)  # device-side, no sync
        self.monitor.update(out.energies)

    def _accumulate(self, loss: torch.Tensor, terms: dict[str, torch.Tensor],
                    stats: dict[str, torch.Tensor]) -> None:
        last = {"loss": loss, **{f"terms/{k}": v.detach().float() for k, v in terms.items()}}
        window = {"loss_avg": loss, **{k: v.detach().float() for k, v in stats.items()}}
        self._last = last
        for key, value in window.items():
            self._window[key] = self._window[key] + value if key in self._window else value
        self._window_steps += 1

    # --- the run --------------------------------------------------------------------------

    @property
    def epoch(self) -> float:
        return round(self.step / self.steps_per_epoch, 4)

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        return self.events.emit(type, self.step, self.epoch, **fields)

    def fit(self, stop: control.StopFlag, resumed_from: int | None = None) -> str:
        """Train until the end, a stop request or an exception; returns the end status."""
        train = self.recipe.train
        self.emit("start", total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch,
                  epochs=self.recipe.train.epochs, batch_size=train.batch_size,
                  method=self.method.name, profile=self.recipe.method.profile,
                  device=str(self.device), n_train=len(self.splits.train),
                  n_valid=len(self.splits.valid) if self.splits.valid is not None else 0,
                  n_test=len(self.splits.test), resumed_from=resumed_from,
                  run_dir=str(self.run_dir))
        self._clock = (time.perf_counter(), self.step)
        while self.step < self.total_steps:
            epoch, index = divmod(self.step, self.steps_per_epoch)
            x, y = self.loader.batch(epoch, index)
            self.train_step(Batch(x, y))
            self.step += 1
            if self.step % train.log_every == 0 or self.step == self.total_steps:
                self.log_metrics()
            if self.monitor.due(self.step):
                self.log_energy()
            if self.step % self.steps_per_epoch == 0:
                self.end_of_epoch()
            if stop.requested:
                return self.stop("signal")
            if self.step % train.control_every == 0 and self.handle_control():
                return self.stop("control/stop")
        return self.finish()

    def log_metrics(self) -> None:
        """Copy the window's metrics to the host (the loop's one regular sync) and emit them."""
        if not self._window_steps:
            return
        keys = list(self._last) + list(self._window)
        values = torch.stack([v.float() for v in self._last.values()] +
                             [v.float() for v in self._window.values()]).cpu().tolist()
        now = time.perf_counter()
        t0, s0 = self._clock
        images = (self.step - s0) * self.recipe.train.batch_size
        metrics: dict[str, Any] = {}
        terms: dict[str, float] = {}
        for key, value in zip(keys, values):
            if key.startswith("terms/"):
                terms[key[6:]] = value
            elif key in self._last:
                metrics[key] = value
            else:
                metrics[key] = value / self._window_steps
        metrics["terms"] = terms
        metrics["weights"] = dict(self.method.weights)
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        metrics["images_per_s"] = images / (now - t0) if now > t0 else None
        metrics["window_steps"] = self._window_steps
        self.emit("metrics", **metrics)
        self._window.clear()
        self._window_steps = 0
        self._clock = (now, self.step)

    def log_energy(self) -> None:
        stats = self.monitor.flush()
        if stats is not None:
            self.emit("energy", **stats)

    def evaluate(self) -> dict[str, float]:
        """Clean accuracy on the validation split (else the test split) and, at the end, test."""
        results: dict[str, float] = {}
        ev = self.recipe.eval
        splits = [("valid", self.splits.valid)] if self.splits.valid is not None else []
        if not splits or self.step == self.total_steps:
            splits.append(("test", self.splits.test))
        for name, split in splits:
            acc, n = clean_accuracy(self.forward_model, split, ev.batch_size, ev.n,
                                    autocast(self.recipe.runtime, self.device))
            results[f"{name}_acc"] = acc
            self.emit("eval", split=name, clean_acc=acc, n=n,
                      protocol={"attack": "none", "checkpoint": "current", "points": n,
                                "split": name, "input_noise": 0.0})
        self._last_eval_step = self.step
        return results

    def end_of_epoch(self) -> None:
        epoch = self.step // self.steps_per_epoch
        ev_every = self.recipe.eval.every_epochs
        if ev_every and epoch % ev_every == 0 and self.step != self.total_steps:
            results = self.evaluate()
            if "valid_acc" in results and results["valid_acc"] > self.best.get("value", -1.0):
                self.best = {"metric": "valid_acc", "value": results["valid_acc"], "step": self.step}
                self.save_checkpoint("best")
        self.save_checkpoint("last")
        every = self.recipe.train.ckpt_every
        if every and epoch % every == 0:
            self.save_checkpoint(f"epoch_{epoch}")

    def handle_control(self) -> bool:
        """Serve requests in control/; True when a stop was asked for."""
        control_dir = self.run_dir / "control"
        stop_asked = False
        for name in control.pending_requests(control_dir):
            if name == "checkpoint":
                self.save_checkpoint("last")
            elif name == "eval":
                self.evaluate()
            elif name == "stop":
                stop_asked = True
            control.mark_handled(control_dir, name, self.step)
        return stop_asked

    def stop(self, reason: str) -> str:
        self.log_metrics()
        self.save_checkpoint("last")
        self.emit("end", status="stopped", reason=reason)
        return "stopped"

    def finish(self) -> str:
        self.log_metrics()
        self.log_energy()
        if self._last_eval_step != self.step:
            results = self.evaluate()
            if "valid_acc" in results and results["valid_acc"] > self.best.get("value", -1.0):
                self.best = {"metric": "valid_acc", "value": results["valid_acc"], "step": self.step}
                self.save_checkpoint("best")
        self.save_checkpoint("last")
        complete = self.step >= self.recipe.train.epochs * self.steps_per_epoch
        self.emit("end", status="finished",
                  reason="all epochs done" if complete else "train.max_steps reached")
        return "finished"

    # --- checkpoints ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "method": self.method.state_dict(),
            "rng": rng_state(),
            "best": dict(self.best),
            "recipe": to_toml(self.recipe),
            "image_shape": list(self.splits.image_shape),
            "n_classes": self.splits.n_classes,
        }

    def save_checkpoint(self, kind: str) -> Path:
        path = save_atomic(self.state(), self.run_dir / CHECKPOINT_DIR / f"{kind}.pt")
        self.emit("checkpoint", kind=kind, path=str(path.relative_to(self.run_dir)))
        return path

    def restore(self, path: Path) -> int:
        """Continue from a checkpoint: every state, the RNGs last (building consumed them)."""
        ckpt = load_checkpoint(path, map_location="cpu")  # RNG states must stay on the CPU
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.method.load_state_dict(ckpt["method"])
        self.best = dict(ckpt.get("best", {}))
        self.step = int(ckpt["step"])
        set_rng_state(ckpt["rng"])
        return self.step
