"""What a step costs, and what it holds: the estimates behind the config's resource caps (training/config.py).

The work is counted as the floating-point operations of large matrix products that take as long on one CPU core
(measured with thread CPU time on a Xeon with AVX-512, one torch thread; docs/benchmarks.md has the Stop times).
``c`` is a Config, or the SimpleNamespace ``unchecked`` makes of one (a Config would check its cost again).
"""

from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace

from . import registry as R
from . import transformer as TF
from .data import FULL_BATCH, TEST_EXAMPLES, TRAIN_EXAMPLES
from .sharpness import ITERATIONS as SHARPNESS_ITERATIONS

PER_PARAM = 400  # norms, clipping, the update and zeroing read every parameter a few times: ~4 ns each
PER_ACTIVATION = 1200  # a probe's statistics of every hidden value (MLP), ~12 ns each
RECURRENT_SLOWDOWN = 1.5  # a recurrent layer's per-time-step products run at ~2/3 of a large product's rate
PER_TIME_STEP = 6e7  # ~0.6 ms per time step: the train step, the test pass and the probe's unrolled loop together
# A sharpness probe: up to ITERATIONS Hessian-vector products, each a double backward over the forward and backward
# graph, ~12 flops per multiply-add and example (twice that with Adam's preconditioned one).
PER_HVP = 12
SPECTRAL = 100  # eigenvalues and 2-norm of the H x H recurrent matrix in float64 on a probe: ~1 ns x H^3


def step_flops(c) -> float:
    """Work of the costliest step: the first, which probes and also evaluates the held-out set."""
    i, o = R.DATASET_DIMS[c.dataset]
    if R.MODELS[c.model].text:
        return TF.step_flops(c, o)
    params = R.param_count(c, i, o)
    b = examples(c)
    if c.is_recurrent:
        macs = c.seq_len * len(R.MODELS[c.model].gates) * c.hidden_size * (i + c.hidden_size) * RECURRENT_SLOWDOWN
        extra = c.seq_len * PER_TIME_STEP + SPECTRAL * c.hidden_size ** 3
    else:
        macs = params
        extra = PER_ACTIVATION * b * sum(c.hidden_sizes)
    if c.sharpness_every:
        extra += PER_HVP * SHARPNESS_ITERATIONS * (2 if c.optimizer == "adam" else 1) * b * macs
    # forward 2 and backward 4 flops per multiply-add and example; the test pass is a forward pass
    return 6 * b * macs + 2 * TEST_EXAMPLES[c.dataset] * macs + PER_PARAM * params + extra


def examples(c) -> int:
    """The examples one step trains on: the batch size, or the whole training set."""
    return TRAIN_EXAMPLES[c.dataset] if c.batch_size == FULL_BATCH else c.batch_size


def unchecked(c, **changes) -> SimpleNamespace:
    """c's values with ``changes``, not validated (a Config would check its step cost again)."""
    return SimpleNamespace(**{**{f.name: getattr(c, f.name) for f in fields(c)}, **changes},
                           is_recurrent=c.is_recurrent)


def max_batch_size(c, cap: float, hi: int) -> int:
    """The largest batch_size from 1 to ``hi`` whose step costs at most ``cap`` with c's other settings (0: none)."""
    lo = 0
    while lo < hi:  # the cost grows with the batch: bisect
        mid = (lo + hi + 1) // 2
        if step_flops(unchecked(c, batch_size=mid)) <= cap:
            lo = mid
        else:
            hi = mid - 1
    return lo


def activation_count(c) -> int:
    """Hidden values of one forward pass (what the activation cap bounds)."""
    if R.MODELS[c.model].text:
        return TF.activation_count(c)
    if not c.is_recurrent:
        return examples(c) * sum(c.hidden_sizes)
    return c.batch_size * c.seq_len * c.hidden_size * len(R.MODELS[c.model].gates)
