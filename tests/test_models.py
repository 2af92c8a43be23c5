"""The networks (training/models.py): what they build, how their parameters are named and initialised, and the
probe's unrolled recurrence against PyTorch's fused layer."""

import math

import pytest
import torch

from training import registry as R
from training.config import Config
from training.engine import Trainer


@pytest.mark.parametrize("model,act", [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")])
def test_unrolled_recurrence_equals_the_fused_layer(model, act):
    t = Trainer(Config(model=model, activation=act, dataset="adding", seq_len=12, hidden_size=10), "cpu")
    x, _ = t.sample()
    fused, _ = t.model.rnn(x)
    steps = torch.stack(t.model.unrolled(x), dim=1)
    torch.testing.assert_close(steps, fused, rtol=1e-5, atol=1e-6)


def build(**changes):
    """The network ``Config(**changes)`` builds, from a generator seeded 0, and its dataset."""
    cfg = Config(**changes)
    ds = R.DATASETS[cfg.dataset](cfg.seq_len)
    return R.build_model(cfg, ds, torch.Generator().manual_seed(0)), ds


def test_the_mlp_names_its_parameters_input_to_output_and_maps_a_batch_to_its_classes():
    net, ds = build(hidden_sizes=(32, 16), norm="layer")
    names = [n for n, _ in net.named_parameters()]
    assert names == ["blocks.0.fc.weight", "blocks.0.fc.bias", "blocks.0.norm.weight", "blocks.0.norm.bias",
                     "blocks.1.fc.weight", "blocks.1.fc.bias", "blocks.1.norm.weight", "blocks.1.norm.bias",
                     "head.weight", "head.bias"]
    shapes = [tuple(lin.weight.shape) for lin in net.linears()]
    assert shapes == [(32, 784), (16, 32), (10, 16)] and net.linears()[-1] is net.head
    x, _ = ds.sample(5, torch.Generator().manual_seed(1))
    assert net(x).shape == (5, 10)


def test_a_probed_forward_records_each_block_and_retains_its_pre_activation_gradient():
    net, ds = build(hidden_sizes=(8, 8, 8), activation="tanh")
    x, _ = ds.sample(4, torch.Generator().manual_seed(1))
    probe = []
    out = net(x, probe)
    assert [tuple(h.shape) for h, _ in probe] == [(4, 8)] * 3
    inputs = [x] + [a for _, a in probe[:-1]]
    for block, x_in, (h, a) in zip(net.blocks, inputs, probe, strict=True):
        torch.testing.assert_close(h, block.fc(x_in))
        torch.testing.assert_close(a, torch.tanh(h))
    out.sum().backward()
    assert all(h.grad is not None for h, _ in probe)  # ∂L/∂h of every layer, for the backward signal
    torch.testing.assert_close(net(x), out)  # unprobed: the same numbers


def test_a_skip_connection_needs_matching_widths():
    net, ds = build(hidden_sizes=(16, 16, 8), residual=True, activation="relu")
    assert [b.residual for b in net.blocks] == [False, True, False]  # 784→16, 16→16, 16→8
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
    block = net.blocks[1]
    torch.testing.assert_close(block(x), x + torch.relu(block.fc(x)))


@pytest.mark.parametrize("init", ["normal", "xavier_normal", "kaiming_normal", "orthogonal"])
def test_each_layer_gets_the_registry_init_drawn_in_order_from_the_one_generator(init):
    """PyTorch's own initialiser, applied layer after layer to fresh tensors from the same seeded generator, is
    the reference: the build adds nothing and skips nothing."""
    net, _ = build(hidden_sizes=(64, 32), init=init, init_std=0.05)
    g = torch.Generator().manual_seed(0)
    fill = {"normal": lambda w: torch.nn.init.normal_(w, 0.0, 0.05, generator=g),
            "xavier_normal": lambda w: torch.nn.init.xavier_normal_(w, generator=g),
            "kaiming_normal": lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="relu", generator=g),
            "orthogonal": lambda w: torch.nn.init.orthogonal_(w, generator=g)}[init]
    for lin in net.linears():
        want = fill(torch.empty_like(lin.weight))
        torch.testing.assert_close(lin.weight.detach(), want, rtol=0, atol=0)
        assert not lin.bias.any()


# The standard deviation each init promises, from (fan_in, fan_out).
STDS = {"normal": lambda fan_in, fan_out: 0.05,  # init_std, whatever the fan-in
        "kaiming_normal": lambda fan_in, fan_out: math.sqrt(2 / fan_in),
        "xavier_normal": lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out))}


@pytest.mark.parametrize("init", list(STDS))
def test_the_weights_spread_is_the_one_the_init_names(init):
    net, _ = build(hidden_sizes=(512, 256), init=init, init_std=0.05)
    for lin in net.linears()[:-1]:  # the head has 10 rows, too few for a tight estimate
        fan_out, fan_in = lin.weight.shape
        assert lin.weight.std().item() == pytest.approx(STDS[init](fan_in, fan_out), rel=0.03)


@pytest.mark.parametrize(("model", "gates"), [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_a_recurrent_net_reads_out_its_last_hidden_state(model, gates):
    net, ds = build(model=model, dataset="adding", seq_len=7, hidden_size=12)
    names = [n for n, _ in net.named_parameters()]
    assert names == ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
                     "head.weight", "head.bias"]
    assert net.recurrent_matrix() is net.rnn.weight_hh_l0 and net.recurrent_matrix().shape == (gates * 12, 12)
    assert net.linears() == [net.head]
    x, _ = ds.sample(5, torch.Generator().manual_seed(1))
    out, _ = net.rnn(x)
    torch.testing.assert_close(net(x), net.head(out[:, -1]))
    assert net(x).shape == (5, 1)


def test_the_pytorch_default_recurrent_init_stays_within_its_bound():
    net, _ = build(model="lstm", dataset="adding", seq_len=5, hidden_size=16, init="pytorch_default")
    bound = 1 / math.sqrt(16)
    for p in net.rnn.parameters():
        assert p.abs().max().item() <= bound and p.std().item() > bound / 4  # uniform in ±bound, not all zero


def test_a_probed_recurrent_forward_gives_the_same_output_and_every_hidden_state():
    net, ds = build(model="gru", dataset="temporal_order", seq_len=9, hidden_size=6)
    x, _ = ds.sample(3, torch.Generator().manual_seed(1))
    probe = []
    out = net(x, probe)
    ((hs, stacked),) = probe
    assert len(hs) == 9 and stacked.shape == (3, 9, 6) and not stacked.requires_grad
    torch.testing.assert_close(out, net(x), rtol=1e-5, atol=1e-6)
