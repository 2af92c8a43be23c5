"""The instrumented training step.

Per step the trainer records, as plain numbers: the loss, the learning rate, the global gradient norm
before and after clipping, whether clipping fired, and for every parameter tensor its gradient norm,
weight norm and update ratio ‖Δw‖/‖w‖. Row N holds the loss and gradients computed on the weights
before update N. Every ``probe_every`` steps it also records per-layer activation statistics and the
backward signal ‖∂L/∂h‖, and on a probe step at least ``eval_every`` steps after the last evaluation, the
test loss and accuracy (the probe's ``test_accuracy`` is None in between).

All of a step's numbers leave the device in one transfer, and a step whose loss or gradients are not
finite is not applied. With plain SGD the update is -lr * g, so every number is known before it: the
step reads them first and applies the update itself only if they are finite (no copy of the weights at all).
Other optimizers update optimistically and roll back from a snapshot when anything turned out non-finite,
so no host sync is needed before the update. Beyond training itself, monitoring reads the gradients and the
weights once each per step; other optimizers also copy the weights and read the difference (the costs are
measured in docs/benchmarks.md).
"""

from __future__ import annotations

import math
import statistics
from collections import deque

import numpy as np
import torch

from . import outcome as O
from . import registry as R
from . import schedule
from . import sharpness as SH
from . import transformer as TF
from .agc import agc
from .config import Config, why_not_live
from .devices import available_devices, best_device  # noqa: F401 (the engine's public names)
from .layout import PER_PARAM, SCALAR_COLUMNS, TEST_COLUMNS, Host, Sent, StepRecord, held_out, row_slices
from .norms import exact_norms as _exact_norms
from .norms import to_host as _to_host

SPIKE_FACTOR = 10.0  # a pre-clip norm above 10x the running median is a spike
SPIKE_WINDOW = 100
SPIKE_MIN_HISTORY = 10  # the median of fewer steps is too noisy to call spikes


class Trainer:
    """One model, optimizer and data stream. Not thread-safe: one thread steps it (see runner.Runner)."""

    def __init__(self, cfg: Config, device: torch.device | str | None = None):
        self.cfg = cfg
        self.device = best_device(cfg.device) if device is None else torch.device(device)
        g = torch.Generator().manual_seed(cfg.seed)
        self.data = R.build_data(cfg).to(self.device)
        self.model = R.build_model(cfg, self.data, g).to(self.device)
        self.batch_gen = torch.Generator().manual_seed(cfg.seed + 1)  # batches: their own stream
        self.names = [n for n, _ in self.model.named_parameters()]
        self.params = [p for _, p in self.model.named_parameters()]
        self.optimizer = R.OPTIMIZERS[cfg.optimizer](self.params, cfg)
        self.lr, self.weight_decay = cfg.lr, cfg.weight_decay
        self.clip, self.clip_threshold, self.clip_norm_type = cfg.clip, cfg.clip_threshold, cfg.clip_norm_type
        self.step_idx = 0
        self._recent_norms: deque[float] = deque(maxlen=SPIKE_WINDOW)
        self.last_finite_norm = float("nan")  # pre-clip L2 norm of the last finite step; NaN before any
        self.last_finite_step: int | None = None
        self.trajectory = O.Trajectory()  # what the outcome classifier reads, O(1) per step
        self._signal_ratio = math.nan  # backward signal first/last hidden layer, from the step-0 probe
        self._loss = R.loss_function(cfg.loss, self.data.task)
        # all-zero and best-constant output losses, for outcome()
        self.references = O.reference_losses(self.data, mse=self._loss is R.LOSSES["mse"].fn)
        self._clip_total = math.nan
        self.columns = SCALAR_COLUMNS + TEST_COLUMNS + [f"{g}/{n}" for g in PER_PARAM for n in self.names]
        self.sharpness = self._sharpness_probe()  # None when off; its columns close the row
        if self.sharpness is not None:
            self.columns += SH.columns(cfg.optimizer)
        self._row = row_slices(len(self.params))
        self.measures = TF.Measures(cfg, self.model) if R.MODELS[cfg.model].text else TF.NO_MEASURES
        self.columns += self.measures.columns  # after every other column: the MLP's and RNNs' rows are unchanged
        self.probe_act = R.hidden_activation(cfg)  # the nonlinearity the probe measures
        self.stuck_label = R.ACTIVATIONS[self.probe_act].stuck_label
        self._sgd_lr_only = _moves_by_lr_times_grad(self.optimizer)
        self._sent = Sent.of(len(self.params), self.clip, not self._sgd_lr_only)  # rebuilt by set_clip
        self._before: list[torch.Tensor] | None = None  # the weights before an optimistic update (other optimizers)
        self._last_eval: int | None = None  # the step of the last test-set evaluation
        # False: probe steps only evaluate the test set (on the same schedule), for callers that keep no activation
        # statistics (the CLI's table); the step's numbers are the same either way.
        self.activation_probes = True

    # Live changes: take effect at the next step.
    def set_lr(self, lr: float) -> None:
        self.lr = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def set_clip(self, mode: str, threshold: float | None = None, norm_type: str | None = None) -> None:
        self.clip = mode
        if threshold is not None:
            self.clip_threshold = threshold
        if norm_type is not None:
            self.clip_norm_type = norm_type
        self._sent = Sent.of(len(self.params), mode, not self._sgd_lr_only)

    @property
    def z_loss(self) -> float:
        return self.measures.z_loss

    def set_z_loss(self, z_loss: float) -> None:
        if (why := why_not_live(self.cfg, "z_loss")) is not None:  # the one rule, as the runner and the page check it
            raise ValueError(f"z_loss: {why}")
        self.measures.z_loss = z_loss

    def set_weight_decay(self, weight_decay: float) -> None:
        if (why := why_not_live(self.cfg, "weight_decay")) is not None:
            raise ValueError(f"weight_decay: {why}")
        self.weight_decay = weight_decay
        R.set_weight_decay(self.optimizer, weight_decay)

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.full_batch:  # the whole training set, in order, every step: nothing is drawn
            return self.data.x_train, self.data.y_train
        x, y = self.data.sample(self.cfg.batch_size, self.batch_gen)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def loss_fn(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._loss(out, y)

    def _sharpness_probe(self) -> SH.Probe | None:
        """The probe on its fixed batch: the training set when training is full-batch, else one batch drawn once
        from its own stream (the training batches' stream is left as it is)."""
        if not self.cfg.sharpness_every:
            return None
        if self.cfg.full_batch:
            batch = self.sample()  # the whole training set, as every step trains on
        else:
            x, y = self.data.sample(self.cfg.batch_size, torch.Generator().manual_seed(self.cfg.seed + 2))
            batch = x.to(self.device), y.to(self.device)
        return SH.Probe(self.model, self.params, self.loss_fn, batch, self.cfg.seed + 3)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor] | None = None) -> StepRecord:
        x, y = self.sample() if batch is None else batch
        sharp = self._measure_sharpness() if self.sharpness is not None else ()
        probing = self.step_idx % self.cfg.probe_every == 0
        # Step 0's statistics stay on: the outcome classifier reads the backward signal's ratio at initialisation.
        probe: list | None = [] if probing and (self.activation_probes or self.step_idx == 0) else None
        if not self.model.training:  # only evaluate() leaves train mode; re-walking every module costs ~40 µs
            self.model.train()
        self._clear_grads()
        lr = schedule.apply(self.optimizer, self.lr, self.cfg, self.step_idx)  # warmup and decay: the lr column's
        loss = self.loss_fn(out := self.model(x, probe), y)
        self.measures.objective(loss, out, y).backward()  # the loss, plus the transformer's z-loss when it has one
        grads = [p.grad for p in self.params]
        # Probe on the weights and raw gradients of this row, before clipping and the update change them.
        probe_out = self._probe(probe) if probing else None

        with torch.no_grad():
            # Per-tensor norms of the gradients and the weights in one call; the clipping reuses the gradients' (as
            # clip_grad_norm_ too takes the norm of these norms). ~190 µs of the reference step: a float32 norm is one
            # chain of dependent vector adds, so it is bound by their latency, not by memory (taken in backward
            # hooks, while each gradient is still in cache, it measured no faster); a faster sum changes the bits.
            n = len(self.params)
            norms = torch._foreach_norm(grads + self.params)
            clip_scalars, post_norms, update = self._clip(grads, norms[:n])
            # One flat row of 0-d tensors, one stack, one transfer, in the order of ``Sent``. A small op costs
            # microseconds, as much as the arithmetic.
            head = [loss, *(clip_scalars or ()), *norms]
            coef = clip_scalars[1] if self._sent.coef is not None else None
            if self._sgd_lr_only:
                host, un, applied = self._look_then_update(grads, update, coef, head, post_norms)
            else:
                host, un, applied = self._update_then_look(grads, coef, head, post_norms)
            clip_norm = self._clip_total if self._sent.total is not None else None

        # The row in Trainer.columns order, built once from plain floats: after forward and backward have swept the
        # caches, every numpy call here costs microseconds, so the few numbers are handled as Python floats.
        loss_v, pre_v, post_v, sent = host.loss, host.pre, host.post, self._sent
        wn = host.values[sent.weights]
        ratios = [u / w if w > 0 else math.nan for u, w in zip(un, wn, strict=True)] if applied else [math.nan] * n
        row = np.array([loss_v, lr, pre_v, post_v, float(host.clipped), *held_out(probe_out),
                        *host.values[sent.grads], *wn, *ratios, *sharp,
                        *self.measures.finish(host.values[len(host.values) - len(self.measures.tail):])])
        at = self._row
        rec = StepRecord(self.step_idx, loss_v, lr, pre_v, post_v, host.clipped, row[at["grad_norm"]],
                         row[at["weight_norm"]], row[at["update_ratio"]], applied, flat=row, clip_norm=clip_norm)
        if not applied:
            rec.events.append(self._explosion_event(rec))
        else:
            self._check_spike(rec)
            self.last_finite_norm, self.last_finite_step = rec.grad_norm_pre_clip, rec.step
        rec.probe = probe_out
        if probe_out is not None and self.step_idx == 0:
            self._signal_ratio = O.signal_ratio(probe_out)
        self.trajectory.add(loss_v, applied)
        if not applied or self.step_idx + 1 >= self.cfg.steps:  # the run's last step: the runner ends it here
            rec.events.insert(0, self.outcome().event(self.step_idx))  # an explosion event stays the last one
        self.step_idx += 1
        return rec

    def _clear_grads(self) -> None:
        """None, not zeros: backward then writes each gradient instead of adding it to a zero-filled buffer. This is
        what optimizer.zero_grad() does, without its profiler scope and per-group loop (~50 µs after a step)."""
        for p in self.params:
            p.grad = None

    def _measure_sharpness(self) -> list[float]:
        """On the weights of this row, before its forward pass; NaN on the steps between probes."""
        n = len(SH.columns(self.cfg.optimizer))  # the preconditioned one too, for Adam
        if self.step_idx % self.cfg.sharpness_every:
            return [math.nan] * n
        self.model.train()  # the loss the steps descend: batch norm on batch statistics
        return self.sharpness.measure(self.optimizer if n == 2 else None)

    def outcome(self) -> O.Outcome:
        """How the run went so far, by the one classifier (training/outcome.py); at the last step, how it ended."""
        return O.classify(self.trajectory, *self.references, signal_ratio=self._signal_ratio,
                          language_model=R.MODELS[self.cfg.model].text)

    def _look_then_update(self, grads, update, coef, head, post_norms) -> tuple[Host, list[float], bool]:
        """Plain SGD: every number of the row is known before the update, so read them first, then apply.

        The update is exactly -lr * g, so ‖Δw‖ = lr * ‖g‖ (post-clip) without a copy of the weights or a second
        pass over them; a non-finite step is simply not applied, so nothing needs rolling back. ``update``: the
        gradients a value or agc clip made (``grads`` keep the values before it).
        """
        host, applied = self._host([*head, *(post_norms or ()), *self.measures.tail], grads)
        if coef is not None and (host.coef < 1.0 or not applied):  # a coefficient of 1.0 changes nothing: skip
            torch._foreach_mul_(grads, coef)
        lr = self.optimizer.param_groups[0]["lr"]
        if applied:
            # What SGD.step() does for a group without momentum, weight decay or maximize (its foreach path; its
            # per-tensor path runs the same kernel), bit for bit (tested), without ~100 µs of its bookkeeping.
            torch._foreach_add_(self.params, update, alpha=-lr)
        if post_norms:  # clip by value or agc: measured after the clamp or the scaling
            return host, [lr * g for g in host.values[self._sent.clamped]], applied
        scale = lr * host.coef if coef is not None else lr
        return host, [scale * g for g in host.values[self._sent.grads]], applied

    def _update_then_look(self, grads, coef, head, post_norms) -> tuple[Host, list[float], bool]:
        """Other optimizers: apply optimistically, measure ‖Δw‖ against a snapshot, roll back if non-finite.

        No host sync is needed before the update: on an accelerator the whole step stays queued.
        """
        if coef is not None:
            torch._foreach_mul_(grads, coef)
        if self._before is None:  # allocated once: a fresh copy every step costs an allocation per tensor
            self._before = [torch.empty_like(p) for p in self.params]
        torch._foreach_copy_(self._before, self.params)
        self.optimizer.step()
        moved = torch._foreach_norm(torch._foreach_sub(self._before, self.params))
        host, applied = self._host([*head, *(post_norms or ()), *moved, *self.measures.tail], grads, self._before,
                                   scaled=coef is not None)
        if not applied:
            torch._foreach_copy_(self.params, self._before)  # the update is not applied
        return host, host.values[self._sent.moved], applied

    def _host(self, scalars: list[torch.Tensor], grads: list[torch.Tensor],
              weights: list[torch.Tensor] | None = None, scaled: bool = False) -> tuple[Host, bool]:
        """The transferred numbers (laid out as ``self._sent``) with the loss and the global norms, and whether the
        step is finite (its loss and every gradient element).

        The L2 global norms are taken here, in float64, from the per-tensor norms (as clip_grad_norm_ takes them),
        whatever the clipping and its norm type: runs compared side by side show the same number for the same
        gradients. A norm clip also sends its total (its own norm type, kept apart in ``_clip_total``) and its
        coefficient (the device needs both to scale). ``weights``: the weights the norms were taken of, when the
        parameters have moved since; ``scaled``: the gradients were multiplied by the clip coefficient since.
        """
        sent, values = self._sent, _to_host(scalars)
        coef = values[sent.coef] if sent.coef is not None else 1.0
        finite = math.isfinite(values[0]) and _exact_norms(
            values, sent.grads.start, sent.n, grads, self.params if weights is None else weights,
            coef if scaled else None)
        pre = math.sqrt(sum([g * g for g in values[sent.grads]]))  # inf or NaN when one of them is
        if sent.total is not None:
            self._clip_total = values[sent.total]
            post = pre * coef
        elif sent.clamped is not None:
            post = math.sqrt(sum([g * g for g in values[sent.clamped]]))
        else:
            post = pre
        clipped = values[sent.units] > 0 if sent.units is not None else post < pre
        return Host(values, values[0], pre, post, coef, clipped), finite

    def _clip(self, grads: list[torch.Tensor], gnorms: list[torch.Tensor]
              ) -> tuple[list[torch.Tensor] | None, list[torch.Tensor] | None, list[torch.Tensor]]:
        """(scalars sent to the host, per-tensor norms after the clip, the gradients to update with).

        Clip by norm: [total, coefficient], and the caller scales ``grads`` by it after the finite check. Clip by
        value and agc: the clipped gradients are new tensors, which the parameters' ``.grad`` now hold (the
        optimizers read them), with their norms and, for agc, [the count of scaled units]; ``grads`` keep the values
        before the clip, so that a float32 norm that overflowed is measured again on them (a clamped inf is finite).
        """
        if self.clip == "norm":
            if self.clip_norm_type == "inf":  # the clip's own norm; the recorded columns stay L2
                total = torch.stack(torch._foreach_norm(grads, math.inf)).max()
            else:
                total = torch.linalg.vector_norm(torch.stack(gnorms))
            # Same arithmetic as torch.nn.utils.clip_grad_norm_: scale by max_norm / (total + 1e-6), capped at 1.
            return [total, torch.clamp(self.clip_threshold / (total + 1e-6), max=1.0)], None, grads
        if self.clip == "value":
            scalars, out = None, torch._foreach_clamp_min(grads, -self.clip_threshold)
            torch._foreach_clamp_max_(out, self.clip_threshold)
        elif self.clip == "agc":
            out, count = agc(self.names, self.params, grads, self.clip_threshold)
            scalars = [count]
        else:
            return None, None, grads
        for p, g in zip(self.params, out, strict=True):
            p.grad = g
        return scalars, torch._foreach_norm(out), out

    def _check_spike(self, rec: StepRecord) -> None:
        norm, recent = rec.grad_norm_pre_clip, self._recent_norms
        # The median is at least the window's minimum: at or below 10x the minimum there is no spike, and the
        # window need not be sorted (the usual case: ~1 µs instead of ~20 for np.median on every step).
        if len(recent) >= SPIKE_MIN_HISTORY and norm > SPIKE_FACTOR * min(recent):
            median = statistics.median(recent)  # same value as np.median: the mean of the middle two when even
            if median > 0 and norm > SPIKE_FACTOR * median:  # a zero median (saturated loss) has no scale
                rec.events.append({"step": rec.step, "kind": "spike", "value": norm, "median": median,
                                   "message": f"gradient norm {norm:.3g} is {norm / median:.0f}x the running median"})
        recent.append(norm)

    def _explosion_event(self, rec: StepRecord) -> dict:
        # First parameter to go non-finite in backward order: the one nearest the output.
        bad = [name for name, v in zip(self.names, rec.grad_norms, strict=True) if not math.isfinite(v)]
        first = bad[-1] if bad else None
        where = f"first non-finite gradient in {first}" if first else "the loss is non-finite"
        last = (f"last finite gradient norm {self.last_finite_norm:.3g} (step {self.last_finite_step})"
                if self.last_finite_step is not None else "no finite step")
        return {"step": rec.step, "kind": "explosion", "param": first, "loss": rec.loss,
                "last_finite_grad_norm": self.last_finite_norm if self.last_finite_step is not None else None,
                "last_finite_step": self.last_finite_step,
                "message": f"step {rec.step}: {where} (loss {rec.loss:.3g}); {last}"}

    @torch.no_grad()
    def _probe(self, probe: list) -> dict:
        """Activation stats and backward signal ‖∂L/∂h‖ of this row; test loss and accuracy when one is due."""
        stuck = R.ACTIVATIONS[self.probe_act].stuck
        test_loss = test_acc = None  # not evaluated at this probe
        if self._last_eval is None or self.step_idx - self._last_eval >= self.cfg.eval_every:
            test_loss, test_acc = self.evaluate()
            self._last_eval = self.step_idx
        out = {"step": self.step_idx, "test_loss": test_loss, "test_accuracy": test_acc,
               "stuck_label": self.stuck_label}
        if probe is None:  # activation statistics off
            return out
        # "dead"/"saturated": the fraction of units stuck on every example of the batch (a unit that passes
        # almost no gradient for the whole batch), not of pre-activation elements: ~half of a healthy ReLU
        # layer's elements are <= 0, yet it has few dead units.
        if not self.cfg.is_recurrent:  # the MLP's layers, or the transformer's feed-forward layers
            stats = torch.stack([torch.stack([a.mean(), a.std(), stuck(h, a).all(dim=0).float().mean(),
                                              _grad_norm(h)]) for h, a in probe]).cpu().double().numpy()
            out.update(layers=[f"blocks.{i}" for i in range(len(probe))], act_mean=stats[:, 0],
                       act_std=stats[:, 1], act_stuck=stats[:, 2], backward_norm=stats[:, 3])
            if self.measures.columns:  # the transformer: attention per head, and one head's pattern
                out.update(self.model.attention_probe())
        else:
            hs, seq = probe[0]  # hs: h_t for every t, seq: (batch, time, hidden)
            w = self.model.recurrent_matrix().detach().double()
            blocks = w.split(w.shape[1])  # one square block per gate (LSTM i, f, g, o; GRU r, z, n; rnn: one)
            radii = torch.stack([torch.linalg.eigvals(b).abs().max() for b in blocks])
            sigmas = torch.stack([torch.linalg.matrix_norm(b, ord=2) for b in blocks])
            dead = stuck(seq, seq).all(dim=0)  # (time, hidden): stuck on every example at that time step
            per_t = torch.stack([seq.std(dim=(0, 2)).double(), dead.double().mean(dim=1),
                                 torch.stack([_grad_norm(h) for h in hs])]).cpu().numpy()
            whole = torch.stack([seq.mean(), seq.std(), dead.float().mean()]).cpu().double().numpy()
            radii, sigmas = radii.cpu().numpy(), sigmas.cpu().numpy()
            out.update(layers=["rnn"], act_mean=whole[:1], act_std=whole[1:2], act_stuck=whole[2:3],
                       backward_norm=np.sqrt((per_t[2:3] ** 2).sum(1)), time_act_std=per_t[0], time_stuck=per_t[1],
                       time_backward_norm=per_t[2], spectral_radius=float(radii.max()),
                       max_singular_value=float(sigmas.max()), gate_radii=radii,
                       gate_names=R.MODELS[self.cfg.model].gates)
        return out

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        from .data import accuracy

        self.model.eval()
        out = self.model(self.data.x_test)
        loss = float(self.loss_fn(out, self.data.y_test))
        acc = accuracy(self.data.task, out, self.data.y_test)
        self.model.train()
        return loss, acc


def _moves_by_lr_times_grad(opt: torch.optim.Optimizer) -> bool:
    """Plain SGD with one parameter group: w -= lr * g exactly (no momentum, weight decay or maximize)."""
    return (type(opt) is torch.optim.SGD and len(opt.param_groups) == 1
            and all(not g["momentum"] and not g["weight_decay"] and not g["maximize"] for g in opt.param_groups))


def _grad_norm(h: torch.Tensor) -> torch.Tensor:
    """‖∂L/∂h‖ in float64: a float32 norm squares in float32 and a signal of ~1e-31 (a recurrent net at radius
    0.5, fifty steps back) would read exactly 0."""
    return (torch.linalg.vector_norm(h.grad, dtype=torch.float64) if h.grad is not None
            else h.new_zeros((), dtype=torch.float64))
