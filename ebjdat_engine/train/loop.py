"""The training loop: one `train_step` per iteration, bookkeeping at fixed cadences.

Read `train_step` against ALGORITHMS.md §11: the method computes its named loss terms, the loop
sums them with the recipe's weights, backpropagates and steps. Nothing in the step syncs with
the host: losses and statistics stay on the device and are copied out every `train.log_every`
(metrics) and `monitor.every` (energies) steps. Between steps the loop only checks Python flags
(signals) and, every `train.control_every` steps, the `control/` directory.

Measurements that need the model in eval mode run between steps, on rank 0, with forked RNGs (a
run takes the same steps with them on or off): the eval-mode energy probe with every energy
event (`monitor.probe_n`) and the generation trace (`monitor.gen_every`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import DataSplits, ImageSplit, make_loader
from ..methods import Batch, Method
from ..models.normalize import bn_stats_frozen
from ..monitor.collapse import ACTIONS, CollapseGuard
from ..monitor.energy import EnergyMonitor
from ..monitor.generation import GenerationTrace
from ..monitor.probe import EnergyProbe
from ..monitor.sample_source import GeneratedSource
from ..recipe import Recipe, to_toml
from ..rundir import RunDir, control
from ..rundir.checkpoint import rng_state, set_rng_state
from ..rundir.events import EventWriter
from ..rundir.scheduler import slurm_info
from . import distributed
from .checkpointing import Checkpointer
from .ema import WeightEMA
from .metrics_window import MetricsWindow
from .optim import build_optimizer, build_schedule, lr_factor
from .runtime import amp_of, autocast, grad_scaler, warn_amp
from .training_eval import TrainingEval

CHECKPOINT_FORMAT = 1
#: the p(x) stream shuffles independently of the labelled stream
PX_STREAM_SEED_OFFSET = 7919
#: the out-of-distribution seed images shuffle independently too
SEED_STREAM_SEED_OFFSET = 104729


def planned_steps(train, steps_per_epoch: int) -> int:
    """Iterations a run trains in all: train.epochs epochs, capped by train.max_steps."""
    total = train.epochs * steps_per_epoch
    return min(total, train.max_steps) if train.max_steps is not None else total


class Trainer:
    """Owns the model, optimizer, schedule, scaler and method for one run directory."""

    def __init__(self, recipe: Recipe, splits: DataSplits, model: nn.Module, method: Method,
                 device: torch.device, run_dir: Path, events: EventWriter,
                 dist: distributed.DistInfo = distributed.DistInfo(),
                 warm_start: dict[str, Any] | None = None, seed_images: ImageSplit | None = None):
        self.recipe = recipe
        self.splits = splits
        self.device = device
        self.run_dir = run_dir
        self.events = events
        self._stop: control.StopFlag | None = None  # fit's signal flag (settled when the job ends)
        self.model = model  # the module whose state is saved (never the compiled wrapper)
        self.forward_model = torch.compile(model) if recipe.runtime.compile else model
        self.dist = dist
        # the update's forwards go through DDP (gradient all-reduce); samplers use the bare model
        self.train_model = self.forward_model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.train_model = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        self.method = method
        train, data = recipe.train, recipe.data
        # device-resident splits are gathered on the device; streamed ones are read in the
        # background (each rank its own share under torchrun)
        where = dict(device=device, rank=dist.rank, world=dist.world_size)
        self.loader = make_loader(splits.train, train.batch_size, seed=recipe.run.seed, **where,
                                  crop_padding=data.crop_padding, hflip=data.hflip,
                                  noise_std=data.noise_std, clf_augment=data.clf_augment,
                                  clf_policy=data.clf_policy, cutout=data.cutout)
        self.px_loader = None
        if method.needs_px:
            self.px_loader = make_loader(
                splits.train, train.px_batch_size or train.batch_size,
                seed=recipe.run.seed + PX_STREAM_SEED_OFFSET, **where,
                crop_padding=data.crop_padding if data.px_augment else 0,
                hflip=data.hflip and data.px_augment, noise_std=data.px_noise_std)
        # DAT's out-of-distribution seeds (sampler.seed_folder): a stream of their own
        self.seed_loader = None
        if seed_images is not None:
            self.seed_loader = make_loader(seed_images, train.batch_size,
                                           seed=recipe.run.seed + SEED_STREAM_SEED_OFFSET, **where)
        self.steps_per_epoch = self.loader.steps_per_epoch
        self.total_steps = planned_steps(train, self.steps_per_epoch)
        sam = (recipe.method.sam_rho, recipe.method.sam_adaptive) if method.uses_sam else None
        self.optimizer = build_optimizer(recipe.optim, model.parameters(), sam=sam)
        # SAM shares its base optimizer's param_groups; the schedule watches the base's steps
        base_optimizer = getattr(self.optimizer, "base_optimizer", self.optimizer)
        self.schedule = build_schedule(recipe.optim, base_optimizer, self.steps_per_epoch)
        # runtime.amp resolved once for this run ('auto' -> 'bf16' or 'off'); recorded in `start`
        self.amp = amp_of(recipe.runtime, device)
        if dist.is_main:
            warn_amp(recipe.runtime, device)  # explicit bf16 on a CPU that emulates it
        self.scaler = grad_scaler(recipe.runtime, device)
        # train.ema: an averaged copy of the weights, what evaluation sees (DAT's EMA)
        self.ema = WeightEMA(model, train.ema) if train.ema > 0 else None
        self.monitor = EnergyMonitor(recipe.monitor, device)
        # eval-mode measurements between steps: rank 0 only, never a collective
        self.generated_source = GeneratedSource(method)
        self.probe = EnergyProbe.for_splits(recipe.monitor, splits, eps=recipe.eval.eps.value,
                                            eps_text=str(recipe.eval.eps)) if dist.is_main else None
        self.gen_trace = GenerationTrace(recipe.monitor, recipe.data, splits, self.generated_source,
                                         device) if dist.is_main else None
        self.collapse = CollapseGuard(recipe.monitor.collapse, splits.n_classes, device)
        self.window = MetricsWindow()
        self.checkpoints = Checkpointer(run_dir, dist, self.emit)
        self.evaluator = TrainingEval(recipe.eval, splits, lambda: autocast(recipe.runtime, device),
                                      recipe.run.seed, self.emit)
        self.lr_scale = 1.0
        self.step = 0
        self.best: dict[str, Any] = {}
        self._clock = (time.perf_counter(), 0)
        self._last_eval_step = -1
        self._generated: torch.Tensor | None = None
        self.warm_start = warm_start  # model.init_from: where the weights came from (start event)

    # --- the iteration --------------------------------------------------------------------

    def train_step(self, batch: Batch) -> None:
        """One iteration (ALGORITHMS.md §11.2): samples -> named loss terms -> weighted sum ->
        backward -> optimizer step (SAM: a second pass at w + e(w) with the same samples)."""
        model, ctx = self.train_model, autocast(self.recipe.runtime, self.device)
        self.model.train()
        samples = self.method.draw(self.forward_model, batch)  # x_q (p(x) sampler), x̃ (inner max)
        with ctx:
            out = self.method.terms(model, batch, samples)
        loss = self.weighted(out.terms)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.method.uses_sam:
            self.optimizer.first_step()                      # w -> w + e(w)
            self.optimizer.zero_grad(set_to_none=True)
            with bn_stats_frozen(self.model), autocast(self.recipe.runtime, self.device):
                again = self.method.terms(model, batch, samples, second_pass=True)
            self.weighted(again.terms).backward()
            self.optimizer.second_step()                     # restore w, base step
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.schedule.step()
        if self.ema is not None:
            self.ema.update()                                # W_ema <- lerp(W_ema, W, 1 - decay)
        # bookkeeping: device-side only, no host sync
        self.window.add(loss.detach(), out.terms, out.stats)
        self._generated = samples.generated  # x_q or DAT's x_neg: a reference, not a copy
        self.monitor.update(out.energies)
        self.collapse.update(step=self.step + 1, generative_loss=out.generative_loss,
                             loss=loss.detach(), energies=out.energies,
                             generated=samples.generated, acc=out.stats.get("acc"))

    def weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Σ weight · term over the terms with a non-zero weight (0 · NaN would still be NaN)."""
        weights = self.method.weights
        return sum(weights[name] * term for name, term in terms.items() if weights.get(name, 0.0) != 0.0)

    def _share(self, loader, x: torch.Tensor | None) -> torch.Tensor | None:
        """Under torchrun each rank trains on its share of the same global batch (a streaming
        loader has read only that share already)."""
        return x if x is None or loader.rank_share else distributed.rank_slice(self.dist, x)

    def _draw(self, loader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        epoch, index = divmod(self.step, loader.steps_per_epoch)
        return tuple(self._share(loader, t) for t in loader.views(epoch, index))

    def next_batch(self) -> Batch:
        x, y, x_clf = self._draw(self.loader)
        x_px = self._draw(self.px_loader)[0] if self.px_loader is not None else None
        x_seed = self._draw(self.seed_loader)[0] if self.seed_loader is not None else None
        return Batch(x, y, x_px, x_clf=x_clf, x_seed=x_seed)

    def close_loaders(self) -> None:
        """Stop the streaming loaders' reader threads (nothing for device-resident data)."""
        for loader in (self.loader, self.px_loader, self.seed_loader):
            if loader is not None:
                loader.close()

    # --- the run --------------------------------------------------------------------------

    @property
    def epoch(self) -> float:
        return round(self.step / self.steps_per_epoch, 4)

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        if type == "end" and self._stop is not None:
            self._stop.settle()  # the record is being closed: a late second Ctrl-C must not tear it
        return self.events.emit(type, self.step, self.epoch, **fields)

    @staticmethod
    def _where() -> dict[str, Any]:
        """The `start` event's `slurm` field under SLURM (which job, task, node, restart), else
        nothing: outside SLURM the event keeps exactly its keys."""
        slurm = slurm_info()
        return {"slurm": slurm} if slurm is not None else {}

    def fit(self, stop: control.StopFlag, resumed_from: int | None = None) -> str:
        """Train until the end, a stop request, a collapse or an exception; returns the status."""
        train = self.recipe.train
        self._stop = stop
        self.emit("start", total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch,
                  epochs=self.recipe.train.epochs, batch_size=train.batch_size,
                  method=self.method.name, profile=self.recipe.method.profile,
                  populations=list(self.method.populations), labels=dict(self.method.labels),
                  weights=dict(self.method.weights), device=str(self.device), amp=self.amp,
                  n_train=len(self.splits.train),
                  n_valid=len(self.splits.valid) if self.splits.valid is not None else 0,
                  n_test=len(self.splits.test), placement=self.splits.placement,
                  data_source=self.splits.note or None, resumed_from=resumed_from, init_from=self.warm_start,
                  run_dir=str(self.run_dir), **self._placement(), **self._where())
        if resumed_from is None:
            self.save_checkpoint("last")  # a healthy state to roll back to from the first step
        self._clock = (time.perf_counter(), self.step)
        if not self.dist.enabled and stop.requested:  # a signal while the job was starting
            return self.stop("signal")
        while self.step < self.total_steps:
            self.train_step(self.next_batch())
            self.step += 1
            if self.method.cadence and self.step % self.method.cadence == 0:
                self.method_check()
            epoch_end = self.step % self.steps_per_epoch == 0
            if self.step % train.log_every == 0 or self.step == self.total_steps:
                self.log_metrics()
            if self.monitor.due(self.step):
                self.log_energy()
            if self.gen_trace is not None and self.gen_trace.due(self.step):
                self.log_generation()
            every = self.recipe.monitor.samples_every
            if every and self.step % every == 0 and self._generated is not None:
                self.save_samples()
            # checked before every checkpoint, so that the last checkpoint is always a healthy state
            if self.collapse.due(self.step) or epoch_end or self.step == self.total_steps:
                action = self.check_collapse()
                if action == "stop":
                    return self.collapsed()
                if action == "rollback":
                    continue
            if epoch_end:
                self.end_of_epoch()
            if not self.dist.enabled and stop.requested:
                return self.stop("signal")
            if self.step % train.control_every == 0:
                reason = self.handle_control(stop)
                if reason:
                    return self.stop(reason)
        return self.finish()

    @staticmethod
    def _placement() -> dict[str, Any]:
        """Where the job was placed from outside, when it was: the GPUs a study (or the user)
        made visible to it (``CUDA_VISIBLE_DEVICES``; `device` above is then cuda:0 of these)."""
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return {"visible_devices": visible} if visible is not None else {}

    def method_check(self) -> None:
        """The method's own periodic decision (DAT's AUC curriculum), the same on every rank."""
        fields = self.method.on_cadence(lambda t: distributed.all_reduce_mean(self.dist, t))
        if fields:
            self.emit("curriculum", method=self.method.name, **fields)

    # --- collapse ---------------------------------------------------------------------------

    def check_collapse(self) -> str:
        """Read the detectors (one host sync) and act: 'none', 'warn', 'stop' or 'rollback'."""
        agree = None
        if self.dist.enabled:  # every rank takes the strongest action any rank asks for
            def agree(action: str) -> str:
                return ACTIONS[distributed.all_max(self.dist, ACTIONS.index(action), self.device)]
        fired_step, fired_epoch = self.step, self.epoch
        action, alarms = (self.collapse.check(self.step, self.epoch, agree) if agree is not None
                          else self.collapse.check(self.step, self.epoch))
        if action == "none":
            return "none"
        restored = self.rollback() if action == "rollback" else None
        for alarm in alarms:  # stamped with the step at which the detectors fired
            self.events.emit("alarm", fired_step, fired_epoch, detector=alarm.detector,
                             policy=alarm.policy, message=alarm.message, values=alarm.values,
                             action=action if alarm.policy != "warn" else "warn",
                             restored_step=restored, rollbacks_used=self.collapse.rollbacks.used,
                             collapse_epoch=self.collapse.collapse_epoch)
        return action

    def rollback(self) -> int:
        """Restore the last checkpoint (healthy by construction), lower the lr, maybe re-initialise the buffer."""
        cfg = self.recipe.monitor.collapse
        self.restore(RunDir(self.run_dir).last_checkpoint, for_rollback=True)
        self.lr_scale *= cfg.rollback_lr_factor
        self._apply_lr_scale()
        if cfg.rollback_reinit_buffer:
            self.method.on_rollback()
        self.collapse.reset()
        self.monitor.flush()
        self.window.clear()
        self._clock = (time.perf_counter(), self.step)
        return self.step

    def _apply_lr_scale(self) -> None:
        base = [self.recipe.optim.lr * self.lr_scale for _ in self.schedule.base_lrs]
        self.schedule.base_lrs = base
        factor = lr_factor(self.recipe.optim, max(self.step - 1, 0), self.steps_per_epoch)
        for group, lr in zip(self.optimizer.param_groups, base):
            group["lr"] = lr * factor

    def collapsed(self) -> str:
        self.log_metrics()
        self.save_checkpoint("collapsed")  # for forensics; the last checkpoint stays the healthy state
        self.emit("end", status="collapsed", collapse_epoch=self.collapse.collapse_epoch,
                  reason="a collapse detector fired with policy 'stop' (or no rollbacks left)")
        return "collapsed"

    def log_metrics(self) -> None:
        """Copy the window's metrics to the host (the loop's one regular sync) and emit them."""
        fields = self.window.read(lambda t: distributed.all_reduce_mean(self.dist, t))  # mean over ranks
        if fields is None:
            return
        now = time.perf_counter()
        t0, s0 = self._clock
        images = (self.step - s0) * self.recipe.train.batch_size
        window_steps = fields.pop("window_steps")
        metrics: dict[str, Any] = {**fields, "weights": dict(self.method.weights),
                                   "lr": self.optimizer.param_groups[0]["lr"],
                                   "images_per_s": images / (now - t0) if now > t0 else None,
                                   "window_steps": window_steps}
        metrics.update(self.method.host_check())
        self.emit("metrics", **metrics)
        self._clock = (now, self.step)

    def save_samples(self) -> None:
        """A PNG grid of this iteration's generated samples and a `sample` event (rank 0)."""
        if not self.dist.is_main:
            return
        from ..eval.grid import save_grid

        x = self._generated[:64]
        path = save_grid(x, self.run_dir / "samples" / f"step_{self.step:07d}.png")
        self.emit("sample", path=str(path.relative_to(self.run_dir)), n=len(x),
                  source="this iteration's sampler output (x_q)", during_training=True)

    def log_energy(self) -> None:
        """The `energy` event: the window's train-mode statistics (the methods' own forwards,
        BatchNorm in train mode) and, on rank 0, the eval-mode probe (`eval_mode`)."""
        stats = self.monitor.flush()
        if stats is None:
            return
        if self.probe is not None:
            generated = self.generated_source.take(self.probe.n, self._generated)
            stats["eval_mode"] = self.probe.measure(self.model, generated)
        self.emit("energy", mode="train", **stats)

    def log_generation(self) -> None:
        """A `generation` event: fd_ref of the current generated samples, its baseline and floor."""
        fields = self.gen_trace.measure(self.step, self._generated) if self.gen_trace is not None else None
        if fields is not None:
            self.emit("generation", **fields)

    @property
    def eval_model(self) -> nn.Module:
        """What evaluation during training sees: the EMA copy when `train.ema` is on."""
        return self.ema.module if self.ema is not None else self.forward_model

    @property
    def weights_label(self) -> str:
        """The weights an evaluation used, as every eval protocol records them."""
        return self.ema.label if self.ema is not None else "raw"

    def evaluate(self) -> dict[str, float]:
        """Clean accuracy on the validation split (else the test split) and, at the end, test."""
        results = self.evaluator.clean(self.eval_model, self.weights_label, final=self.step == self.total_steps)
        self._last_eval_step = self.step
        return results

    def robust_evaluate(self) -> dict[str, float]:
        """PGD-20 and an AutoAttack subset on a few validation (else test) points, as an
        `eval` event: a cheap robustness trace during training, with its protocol."""
        return self.evaluator.robust(self.eval_model, self.weights_label)

    def end_of_epoch(self) -> None:
        epoch = self.step // self.steps_per_epoch
        ev_every = self.recipe.eval.every_epochs
        if ev_every and epoch % ev_every == 0 and self.step != self.total_steps:
            results = self.evaluate()
            if "valid_acc" in results and results["valid_acc"] > self.best.get("value", -1.0):
                self.best = {"metric": "valid_acc", "value": results["valid_acc"], "step": self.step}
                self.save_checkpoint("best")
        robust_every = self.recipe.eval.robust_every
        if robust_every and epoch % robust_every == 0:
            self.robust_evaluate()
        self.save_checkpoint("last")
        every = self.recipe.train.ckpt_every
        if every and epoch % every == 0:
            self.save_checkpoint(f"epoch_{epoch}")

    def handle_control(self, stop: control.StopFlag) -> str | None:
        """Serve requests in control/ (rank 0 reads them, every rank acts); the stop reason
        when a stop was asked for (a control file, or a signal on any rank)."""
        control_dir = self.run_dir / "control"
        names = control.pending_requests(control_dir) if self.dist.is_main else []
        names = distributed.broadcast_object(self.dist, names)
        reason = None
        for name in names:
            if name == "checkpoint":
                self.save_checkpoint("last")
            elif name == "eval":
                self.evaluate()
            elif name == "stop":
                reason = "control/stop"
            if self.dist.is_main:
                control.mark_handled(control_dir, name, self.step)
        if self.dist.enabled and distributed.all_max(self.dist, int(stop.requested), self.device):
            reason = reason or "signal"
        return reason

    def stop(self, reason: str) -> str:
        if self._stop is not None:
            self._stop.settle()  # checkpoint and end are short: a second Ctrl-C now would only lose them
        if self.check_collapse() in ("stop", "rollback"):
            return self.collapsed()
        self.log_metrics()
        self.save_checkpoint("last")
        self.emit("end", status="stopped", reason=reason)
        return "stopped"

    def finish(self) -> str:
        self.log_metrics()
        self.log_energy()
        if self.gen_trace is not None and self.gen_trace.enabled and self.gen_trace.last_step != self.step:
            self.log_generation()
        if self._last_eval_step != self.step:
            results = self.evaluate()
            if "valid_acc" in results and results["valid_acc"] > self.best.get("value", -1.0):
                self.best = {"metric": "valid_acc", "value": results["valid_acc"], "step": self.step}
                self.save_checkpoint("best")
        self.save_checkpoint("last")
        if self.recipe.eval.final and self.dist.is_main:
            from ..eval.evaluate import evaluate

            self.events.close()  # the evaluation appends its own event; reopen after
            evaluate(self.run_dir, ckpt="last", n=self.recipe.eval.final_n, eps=str(self.recipe.eval.eps),
                     device=self.device, seed=self.recipe.run.seed, listeners=self.events.listeners)
            self.events = type(self.events)(self.run_dir, self.events.listeners)
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
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "method": self.method.state_dict(),
            "rng": rng_state(),
            "best": dict(self.best),
            "lr_scale": self.lr_scale,
            "rollbacks": self.collapse.rollbacks.state_dict(),
            "collapse_epoch": self.collapse.collapse_epoch,
            "recipe": to_toml(self.recipe),
            "image_shape": list(self.splits.image_shape),
            "n_classes": self.splits.n_classes,
        }

    def save_checkpoint(self, kind: str) -> Path:
        """Checkpoint `kind` of the whole training state (components: train/checkpointing.py)."""
        return self.checkpoints.save(kind, self.step, self.state, self.method.state_dict)

    @property
    def last_saved_step(self) -> int | None:
        """The step the last checkpoint holds (None before the first)."""
        return self.checkpoints.last_saved_step

    def restore(self, path: Path, for_rollback: bool = False, state: dict[str, Any] | None = None) -> int:
        """Continue from a checkpoint: every state, the RNGs last (building consumed them).
        A rollback keeps its own bookkeeping (lr scale, rollbacks used, collapse epoch) and the
        current RNG stream, so the retry does not replay the same noise. `state`: the checkpoint
        at `path` when the caller has loaded it already (a resume checks it first)."""
        ckpt, rank_state = self.checkpoints.load(path, state)
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None:
            if ckpt.get("ema"):
                self.ema.load_state_dict(ckpt["ema"])
            else:  # train.ema turned on at a resume: average from the weights as they are
                self.ema = WeightEMA(self.model, self.recipe.train.ema)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.method.load_state_dict(rank_state["method"] if rank_state else ckpt["method"])
        self.best = dict(ckpt.get("best", {}))
        self.step = int(ckpt["step"])
        if not for_rollback:
            self.checkpoints.last_saved_step = self.step
            self.lr_scale = float(ckpt.get("lr_scale", 1.0))
            self.collapse.rollbacks.load_state_dict(ckpt.get("rollbacks", {}))
            self.collapse.collapse_epoch = ckpt.get("collapse_epoch")
            set_rng_state(rank_state["rng"] if rank_state else ckpt["rng"])
        return self.step
