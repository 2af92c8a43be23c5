"""The networks (training/models.py): what they build, how their parameters are named and initialised, and the
probe's unrolled recurrence against PyTorch's fused layer."""

import pytest
import torch

from training.config import Config
from training.engine import Trainer


@pytest.mark.parametrize("model,act", [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")])
def test_unrolled_recurrence_equals_the_fused_layer(model, act):
    t = Trainer(Config(model=model, activation=act, dataset="adding", seq_len=12, hidden_size=10), "cpu")
    x, _ = t.sample()
    fused, _ = t.model.rnn(x)
    steps = torch.stack(t.model.unrolled(x), dim=1)
    torch.testing.assert_close(steps, fused, rtol=1e-5, atol=1e-6)
