"""The instrumented training step.

Per step the trainer records, as plain numbers: the loss, the learning rate, the global gradient norm
before and after clipping, whether clipping fired, and for every parameter tensor its gradient norm,
weight norm and update ratio ‖Δw‖/‖w‖. Row N holds the loss and gradients computed on the weights
before update N. Every ``probe_every`` steps it also records per-layer activation statistics, the
backward signal ‖∂L/∂h‖, gradient histograms and test accuracy.

All of a step's numbers leave the device in one transfer. The update is applied optimistically and
rolled back from a snapshot when anything turned out non-finite, so no host sync is needed before it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import registry as R
from .config import Config

HIST_EDGES = np.arange(-12.0, 6.5, 0.5)  # log10 |g| bins for gradient histograms
SPIKE_FACTOR = 10.0  # a pre-clip norm above 10x the running median is a spike
SPIKE_WINDOW = 100
SPIKE_MIN_HISTORY = 10  # the median of fewer steps is too noisy to call spikes


def best_device(requested: str = "auto") -> torch.device:
    """cuda, then mps, then cpu; a requested device that is absent is an error, not a silent fallback."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    if not available[requested]:
        raise RuntimeError(f"device: {requested} is not available on this machine; use auto or cpu")
    return torch.device(requested)


def available_devices() -> list[str]:
    out = ["cpu"]
    if torch.cuda.is_available():
        out.insert(0, "cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        out.insert(0, "mps")
    return out


@dataclass
class StepRecord:
    step: int
    loss: float
    lr: float
    grad_norm_pre_clip: float
    grad_norm_post_clip: float
    clipped: bool
    grad_norms: np.ndarray  # per parameter, forward order
    weight_norms: np.ndarray
    update_ratios: np.ndarray  # ‖Δw‖/‖w‖; NaN where undefined (‖w‖ = 0) or not applied (a non-finite step)
    applied: bool = True
    probe: dict | None = None
    events: list[dict] = field(default_factory=list)

    def row(self) -> np.ndarray:
        """Flat row in ``Trainer.columns`` order."""
        head = [self.loss, self.lr, self.grad_norm_pre_clip, self.grad_norm_post_clip, float(self.clipped)]
        return np.concatenate([head, self.grad_norms, self.weight_norms, self.update_ratios])


SCALAR_COLUMNS = ["loss", "lr", "grad_norm_pre_clip", "grad_norm_post_clip", "clipped"]


class Trainer:
    """One model, optimizer and data stream. Not thread-safe: one thread steps it (see runner.Runner)."""

    def __init__(self, cfg: Config, device: torch.device | str | None = None):
        self.cfg = cfg
        self.device = best_device(cfg.device) if device is None else torch.device(device)
        g = torch.Generator().manual_seed(cfg.seed)
        self.data = R.DATASETS[cfg.dataset](cfg.seq_len).to(self.device)
        self.model = R.build_model(cfg, self.data, g).to(self.device)
        self.batch_gen = torch.Generator().manual_seed(cfg.seed + 1)  # batches: their own stream
        self.names = [n for n, _ in self.model.named_parameters()]
        self.params = [p for _, p in self.model.named_parameters()]
        self.optimizer = R.OPTIMIZERS[cfg.optimizer](self.params, cfg)
        self.lr = cfg.lr
        self.clip, self.clip_threshold, self.clip_norm_type = cfg.clip, cfg.clip_threshold, cfg.clip_norm_type
        self.step_idx = 0
        self._recent_norms: deque[float] = deque(maxlen=SPIKE_WINDOW)
        self.last_finite_norm = float("nan")
        self.columns = (SCALAR_COLUMNS + [f"grad_norm/{n}" for n in self.names]
                        + [f"weight_norm/{n}" for n in self.names] + [f"update_ratio/{n}" for n in self.names])
        self.stuck_label = R.ACTIVATIONS[cfg.activation].stuck_label if cfg.model != "lstm" else "saturated"

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

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.data.sample(self.cfg.batch_size, self.batch_gen)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def loss_fn(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y) if self.data.task == "classification" else F.mse_loss(out, y)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor] | None = None) -> StepRecord:
        x, y = self.sample() if batch is None else batch
        probing = self.step_idx % self.cfg.probe_every == 0
        probe: list | None = [] if probing else None
        self.model.train()
        self.optimizer.zero_grad(set_to_none=False)
        loss = self.loss_fn(self.model(x, probe), y)
        loss.backward()
        grads = [p.grad for p in self.params]
        # Probe on the weights and raw gradients of this row, before clipping and the update change them.
        probe_out = self._probe(probe) if probing else None

        # Norms once, reused by the clipping (as clip_grad_norm_ computes them: per-tensor, then of the stack).
        gnorms = torch.stack(torch._foreach_norm(grads))
        if self.clip == "norm" and self.clip_norm_type == "inf":
            total = torch.stack(torch._foreach_norm(grads, math.inf)).max()
        else:
            total = torch.linalg.vector_norm(gnorms)
        post = self._clip(grads, total)

        with torch.no_grad():
            before = [p.detach().clone() for p in self.params]  # for ‖Δw‖ and the rollback
            wnorms = torch.stack(torch._foreach_norm(before))
            self.optimizer.step()
            unorms = torch.stack(torch._foreach_norm(torch._foreach_sub(before, self.params)))

        head = torch.stack([loss.detach().float(), total.float(), post.float()])
        host = torch.cat([head, gnorms.float(), wnorms.float(), unorms.float()]).cpu().numpy().astype(np.float64)
        n = len(self.params)
        loss_v, pre_v, post_v = host[:3]
        gn, wn, un = host[3:3 + n], host[3 + n:3 + 2 * n], host[3 + 2 * n:]
        rec = StepRecord(self.step_idx, float(loss_v), self.lr, float(pre_v), float(post_v),
                         bool(post_v < pre_v), gn, wn, un / np.where(wn > 0, wn, np.nan))
        if not (math.isfinite(loss_v) and np.isfinite(gn).all() and math.isfinite(pre_v)):
            with torch.no_grad():
                torch._foreach_copy_(self.params, before)  # the update is not applied
            rec.applied = False
            rec.update_ratios = np.full(n, np.nan)
            rec.events.append(self._explosion_event(rec))
        else:
            self._check_spike(rec)
            self.last_finite_norm = rec.grad_norm_pre_clip
        rec.probe = probe_out
        self.step_idx += 1
        return rec

    def _clip(self, grads: list[torch.Tensor], total: torch.Tensor) -> torch.Tensor:
        """Clip in place; return the post-clip global norm (L2, or inf for an inf-norm clip)."""
        if self.clip == "norm":
            # Same arithmetic as torch.nn.utils.clip_grad_norm_: scale by max_norm / (total + 1e-6), capped at 1.
            coef = torch.clamp(self.clip_threshold / (total + 1e-6), max=1.0)
            torch._foreach_mul_(grads, coef)
            return total * coef  # the norm scales linearly; equals re-measuring up to rounding (tested)
        if self.clip == "value":
            torch._foreach_clamp_min_(grads, -self.clip_threshold)
            torch._foreach_clamp_max_(grads, self.clip_threshold)
            return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        return total

    def _check_spike(self, rec: StepRecord) -> None:
        if len(self._recent_norms) >= SPIKE_MIN_HISTORY:
            median = float(np.median(self._recent_norms))
            if rec.grad_norm_pre_clip > SPIKE_FACTOR * median:
                rec.events.append({"step": rec.step, "kind": "spike", "value": rec.grad_norm_pre_clip,
                                   "median": median,
                                   "message": f"gradient norm {rec.grad_norm_pre_clip:.3g} is "
                                              f"{rec.grad_norm_pre_clip / median:.0f}x the running median"})
        self._recent_norms.append(rec.grad_norm_pre_clip)

    def _explosion_event(self, rec: StepRecord) -> dict:
        # First parameter to go non-finite in backward order: the one nearest the output.
        bad = [name for name, v in zip(self.names, rec.grad_norms, strict=True) if not math.isfinite(v)]
        first = bad[-1] if bad else None
        where = f"first non-finite gradient in {first}" if first else "the loss is non-finite"
        return {"step": rec.step, "kind": "explosion", "param": first, "loss": rec.loss,
                "last_finite_grad_norm": self.last_finite_norm,
                "message": f"step {rec.step}: {where} (loss {rec.loss:.3g})"}

    @torch.no_grad()
    def _probe(self, probe: list) -> dict:
        """Activation stats, backward signal ‖∂L/∂h‖, gradient histograms and test accuracy of this row."""
        act = self.cfg.activation if self.cfg.model in ("mlp", "rnn") else "tanh"  # lstm/gru: tanh-squashed h
        stuck = R.ACTIVATIONS[act].stuck
        weights = [(n, p.grad) for n, p in zip(self.names, self.params, strict=True) if p.dim() >= 2]
        hists = [torch.histc(torch.log10(g.abs().float().flatten().clamp_min(1e-30)), bins=len(HIST_EDGES) - 1,
                             min=float(HIST_EDGES[0]), max=float(HIST_EDGES[-1])) for _, g in weights]
        test_loss, test_acc = self.evaluate()
        out = {"step": self.step_idx, "test_loss": test_loss, "test_accuracy": test_acc,
               "stuck_label": self.stuck_label, "hist_params": [n for n, _ in weights], "hist_edges": HIST_EDGES}
        if self.cfg.model == "mlp":
            stats = torch.stack([torch.stack([a.mean(), a.std(), stuck(h, a).float().mean(), _grad_norm(h)])
                                 for h, a in probe]).cpu().double().numpy()
            out.update(layers=[f"blocks.{i}" for i in range(len(probe))], act_mean=stats[:, 0],
                       act_std=stats[:, 1], act_stuck=stats[:, 2], backward_norm=stats[:, 3])
        else:
            hs, seq = probe[0]  # hs: h_t for every t, seq: (batch, time, hidden)
            w = self.model.recurrent_matrix().detach().double()
            hh = w[: w.shape[1]]  # the first gate block is square (the whole matrix for a plain rnn)
            per_t = torch.stack([seq.std(dim=(0, 2)), stuck(seq, seq).float().mean(dim=(0, 2)),
                                 torch.stack([_grad_norm(h) for h in hs])]).cpu().double().numpy()
            whole = torch.stack([seq.mean(), seq.std(), stuck(seq, seq).float().mean(),
                                 torch.linalg.eigvals(hh).abs().max().to(seq.dtype),
                                 torch.linalg.matrix_norm(hh, ord=2).to(seq.dtype)]).cpu().double().numpy()
            out.update(layers=["rnn"], act_mean=whole[:1], act_std=whole[1:2], act_stuck=whole[2:3],
                       backward_norm=np.sqrt((per_t[2:3] ** 2).sum(1)), time_act_std=per_t[0], time_stuck=per_t[1],
                       time_backward_norm=per_t[2], spectral_radius=float(whole[3]), max_singular_value=float(whole[4]))
        out["hist_counts"] = torch.stack(hists).cpu().numpy() if hists else np.zeros((0, len(HIST_EDGES) - 1))
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


def _grad_norm(h: torch.Tensor) -> torch.Tensor:
    return h.grad.norm() if h.grad is not None else h.new_zeros(())
