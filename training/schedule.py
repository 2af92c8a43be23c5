"""The learning rate over a run: linear warmup, then constant or cosine decay. The engine applies it per step."""

from __future__ import annotations

import math

import torch


def lr_factor(warmup_steps: int, schedule: str, steps: int, step: int) -> float:
    """The multiple of the base lr at ``step`` (0-based): (step + 1)/warmup during warmup, then 1 (constant) or
    ½(1 + cos π·progress) (cosine), progress running from 0 after warmup to 1 at step ``steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def apply(optimizer: torch.optim.Optimizer, base_lr: float, cfg, step: int) -> float:
    """Set the lr of every parameter group for ``step`` from the base lr (which a live change sets); returns it.
    Without warmup or decay nothing is set: the optimizer already holds the base lr."""
    if cfg.warmup_steps == 0 and cfg.schedule == "constant":
        return base_lr
    lr = base_lr * lr_factor(cfg.warmup_steps, cfg.schedule, cfg.steps, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
