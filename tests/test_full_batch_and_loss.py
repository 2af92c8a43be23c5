"""Full-batch training (batch_size full) and the square loss (loss mse), against plain PyTorch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training import cost
from training import outcome as O
from training.config import Config, ConfigError, from_dict, from_query
from training.engine import Trainer


def test_full_is_the_batch_size_in_every_interface():
    c = from_dict({"batch_size": "full"})
    assert c.full_batch and c.batch_size == 0 and cost.examples(c) == 1437
    assert c.to_query()["batch_size"] == "full"
    assert from_query(c.to_query())[0] == c
    assert from_dict({"batch_size": "FULL"}) == c and from_dict({"batch_size": 0}) == c


@pytest.mark.parametrize("changes,field,needle", [
    ({"model": "lstm", "dataset": "adding", "batch_size": 0}, "batch_size", "fixed training set (digits or gaussian)"),
    ({"model": "rnn", "dataset": "adding", "loss": "cross_entropy"}, "loss", "regression task; allowed: auto, mse"),
    ({"loss": "hinge"}, "loss", "allowed: auto, cross_entropy, mse"),
    ({"batch_size": -1}, "batch_size", "or full"),
])
def test_refusals_name_the_field_and_what_is_allowed(changes, field, needle):
    with pytest.raises(ConfigError) as e:
        Config(**changes)
    assert e.value.field == field and needle in str(e.value)


def test_a_full_batch_step_is_plain_gradient_descent_on_the_whole_training_set():
    cfg = Config(hidden_sizes=(16,), batch_size=0, loss="mse", lr=0.1, activation="tanh")
    t = Trainer(cfg, "cpu")
    x, y = t.data.x_train, t.data.y_train
    ref = Trainer(cfg, "cpu").model  # the same seed: the same initial weights
    for _ in range(3):
        rec = t.step()
        ref.zero_grad()
        loss = F.mse_loss(ref(x), F.one_hot(y, 10).float())
        loss.backward()
        with torch.no_grad():
            for p in ref.parameters():
                p -= 0.1 * p.grad
        assert rec.loss == pytest.approx(loss.item(), rel=1e-6)
    for a, b in zip(t.model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_mse_on_classes_scores_one_hot_targets_and_auto_keeps_each_tasks_own_loss():
    out, y = torch.randn(8, 10), torch.randint(10, (8,))
    assert Trainer(Config(hidden_sizes=(4,), loss="mse"), "cpu").loss_fn(out, y) == F.mse_loss(
        out, F.one_hot(y, 10).float())
    assert Trainer(Config(hidden_sizes=(4,)), "cpu").loss_fn(out, y) == F.cross_entropy(out, y)
    r, target = torch.randn(8, 1), torch.randn(8, 1)
    assert Trainer(Config(model="rnn", dataset="adding", hidden_size=4), "cpu").loss_fn(r, target) == F.mse_loss(
        r, target)


def test_the_outcome_references_follow_the_loss():
    t = Trainer(Config(hidden_sizes=(4,), loss="mse"), "cpu")
    y = F.one_hot(t.data.y_train, 10).double()
    zero, const = t.references
    assert zero == pytest.approx(float((y ** 2).mean()))  # an all-zero output
    assert const == pytest.approx(float(((y - y.mean(0)) ** 2).mean()))  # the best constant: the class frequencies
    ce = Trainer(Config(hidden_sizes=(4,)), "cpu").references
    assert ce[0] == pytest.approx(math.log(10)) and ce == O.reference_losses(t.data)
