"""The instrumented step, checked against PyTorch computing the same numbers directly."""

import copy
import math

import numpy as np
import pytest
import torch

from training import registry as R
from training.config import Config, from_preset
from training.engine import Trainer
from training.layout import row_slices

SMALL = {"hidden_sizes": (32, 16), "batch_size": 16}


def _combos():
    for init in R.INITS:
        if init not in R.RECURRENT_ONLY_INITS:
            for act in R.ACTIVATIONS:
                yield {"model": "mlp", "activation": act, "init": init, **SMALL}
        for model in R.RECURRENT_MODELS:
            acts = ("tanh", "relu") if model == "rnn" else ("tanh",)
            for act in acts:
                yield {"model": model, "activation": act, "init": init, "dataset": "adding", "seq_len": 6,
                       "hidden_size": 8, "batch_size": 8}


@pytest.mark.parametrize("changes", list(_combos()), ids=lambda c: f"{c['model']}-{c['activation']}-{c['init']}")
def test_every_model_activation_init_builds_and_steps(changes):
    t = Trainer(Config(**changes, init_std=0.1, probe_every=1), "cpu")
    rec = t.step()
    assert rec.step == 0 and math.isfinite(rec.loss) and rec.applied
    assert len(rec.grad_norms) == len(t.names) == len(rec.weight_norms) == len(rec.update_ratios)
    assert rec.probe is not None and len(rec.probe["backward_norm"]) >= 1


def _reference_step(t: Trainer, batch, clip: str, threshold: float, norm_type: str):
    """The same step done by hand with PyTorch's own utilities on a copy of the model."""
    model = copy.deepcopy(t.model)
    opt = R.OPTIMIZERS[t.cfg.optimizer](list(model.parameters()), t.cfg)
    opt.load_state_dict(copy.deepcopy(t.optimizer.state_dict()))  # buffers must not be shared
    x, y = batch
    loss = t.loss_fn(model(x), y)
    opt.zero_grad()
    loss.backward()
    params = list(model.parameters())
    grad_norms = [p.grad.norm().item() for p in params]
    before = [p.detach().clone() for p in params]
    nt = math.inf if norm_type == "inf" else 2.0
    # The recorded columns are the L2 norm whatever the clip's norm type; the clip's own norm is returned apart.
    pre = torch.nn.utils.get_total_norm([p.grad for p in params], 2.0).item()
    clip_norm = None
    if clip == "norm":
        clip_norm = torch.nn.utils.clip_grad_norm_(params, threshold, norm_type=nt).item()
    elif clip == "value":
        torch.nn.utils.clip_grad_value_(params, threshold)
    post = torch.nn.utils.get_total_norm([p.grad for p in params], 2.0).item()
    opt.step()
    # Undefined (NaN) for a tensor whose norm is zero, e.g. zero-initialised biases at step 0.
    ratios = [((p.detach() - b).norm() / b.norm()).item() if b.norm() > 0 else math.nan
              for p, b in zip(params, before, strict=True)]
    return loss.item(), pre, post, grad_norms, [b.norm().item() for b in before], ratios, params, clip_norm


@pytest.mark.parametrize("clip,threshold,norm_type,optimizer", [
    ("none", 1.0, "2", "sgd"), ("norm", 1.0, "2", "sgd"), ("norm", 0.5, "inf", "momentum"),
    ("value", 0.01, "2", "adam"), ("norm", 1e6, "2", "adam"),
])
def test_recorded_numbers_equal_pytorch(clip, threshold, norm_type, optimizer):
    cfg = Config(hidden_sizes=(64, 32), batch_size=32, clip=clip, clip_threshold=threshold, clip_norm_type=norm_type,
                 optimizer=optimizer, lr=0.05, init="normal", init_std=0.2)
    t = Trainer(cfg, "cpu")
    for _ in range(3):  # not only the first step: optimizer state and changed weights too
        batch = t.sample()
        ref = _reference_step(t, batch, clip, threshold, norm_type)
        rec = t.step(batch)
        loss, pre, post, gn, wn, ur, ref_params, clip_norm = ref
        assert rec.loss == pytest.approx(loss, rel=1e-6)
        assert rec.grad_norm_pre_clip == pytest.approx(pre, rel=1e-6)  # L2, whatever the clip's norm type
        assert rec.grad_norm_post_clip == pytest.approx(post, rel=1e-5)
        if clip == "norm":
            assert rec.clip_norm == pytest.approx(clip_norm, rel=1e-6)  # what clip_grad_norm_ returns
        else:
            assert rec.clip_norm is None
        np.testing.assert_allclose(rec.grad_norms, gn, rtol=1e-5)
        np.testing.assert_allclose(rec.weight_norms, wn, rtol=1e-6)
        np.testing.assert_allclose(rec.update_ratios, ur, rtol=1e-4)
        if clip == "norm" and norm_type == "2":
            assert rec.grad_norm_post_clip <= threshold * (1 + 1e-6)
        if clip == "norm":
            assert rec.clipped == (clip_norm > threshold)
        # The trained weights equal the reference's bit for bit: the engine applied the same update (for plain
        # SGD it applies it itself instead of calling SGD.step()).
        for p, q in zip(t.params, ref_params, strict=True):
            assert torch.equal(p.detach(), q.detach())
    assert t.names == [n for n, _ in t.model.named_parameters()]


def test_row_n_holds_loss_on_weights_before_update_n():
    t = Trainer(Config(**SMALL), "cpu")
    batch = t.sample()
    with torch.no_grad():
        expected = t.loss_fn(t.model(batch[0]), batch[1]).item()
    assert t.step(batch).loss == pytest.approx(expected, rel=1e-6)


def test_post_clip_never_exceeds_threshold_on_an_exploding_net():
    t = Trainer(from_preset("clip it", probe_every=1000), "cpu")
    for _ in range(30):
        rec = t.step()
        assert rec.grad_norm_pre_clip > 1.0 and rec.clipped
        assert rec.grad_norm_post_clip <= 1.0 * (1 + 1e-6)
        # Measured again directly on the clipped gradients.
        measured = torch.nn.utils.get_total_norm([p.grad for p in t.params]).item()
        assert measured == pytest.approx(rec.grad_norm_post_clip, rel=1e-5)


def test_value_clipping_bounds_every_gradient_entry():
    t = Trainer(Config(**SMALL, clip="value", clip_threshold=1e-3, init="normal", init_std=1.0), "cpu")
    rec = t.step()
    assert rec.clipped and rec.grad_norm_post_clip < rec.grad_norm_pre_clip
    assert max(p.grad.abs().max().item() for p in t.params) <= 1e-3 * (1 + 1e-6)  # float32 rounding of 1e-3


def test_non_finite_step_is_not_applied_and_names_the_first_parameter():
    t = Trainer(from_preset("watch it explode", probe_every=1000), "cpu")
    for _ in range(100):
        before = [p.detach().clone() for p in t.params]
        rec = t.step()
        if not rec.applied:
            break
    assert not rec.applied, "the explode preset must go non-finite within 100 steps"
    for p, b in zip(t.params, before, strict=True):
        assert torch.equal(p.detach(), b)  # the update was rolled back
    ev = [e for e in rec.events if e["kind"] == "explosion"]
    assert len(ev) == 1 and ev[0]["step"] == rec.step
    bad = [n for n, g in zip(t.names, rec.grad_norms, strict=True) if not math.isfinite(g)]
    assert ev[0]["param"] == bad[-1]  # backward order: nearest the output first
    assert math.isfinite(ev[0]["last_finite_grad_norm"])
    assert np.isnan(rec.update_ratios).all()


def test_non_finite_loss_is_an_explosion_even_with_finite_gradients():
    t = Trainer(Config(**SMALL), "cpu")
    x, y = t.sample()
    x = x.clone()
    x[0, 0] = float("nan")
    rec = t.step((x, y))
    assert not rec.applied and rec.events[-1]["kind"] == "explosion"


def test_spike_is_recorded_but_does_not_stop():
    t = Trainer(Config(**SMALL, probe_every=1000), "cpu")
    for _ in range(20):
        assert t.step().applied
    x, y = t.sample()
    rec = t.step((x * 1000.0, y))
    assert rec.applied
    spikes = [e for e in rec.events if e["kind"] == "spike"]
    assert spikes and spikes[0]["value"] > 10 * spikes[0]["median"]
    assert t.step().applied


def test_same_seed_gives_identical_losses_and_another_seed_does_not():
    def losses(seed):
        t = Trainer(Config(**SMALL, seed=seed, probe_every=5), "cpu")
        return [t.step().loss for _ in range(15)]

    assert losses(3) == losses(3)
    assert losses(3) != losses(4)


def test_probe_measures_activations_and_backward_signal():
    t = Trainer(Config(hidden_sizes=(64, 64, 64), activation="relu", init="kaiming_normal", probe_every=1), "cpu")
    batch = t.sample()
    # Reference: hooks on a copy of the model.
    model = copy.deepcopy(t.model)
    outs = []

    def keep(module, inputs, out):
        out.retain_grad()
        outs.append(out)

    for block in model.blocks:
        block.fc.register_forward_hook(keep)
    t.loss_fn(model(batch[0]), batch[1]).backward()
    with torch.no_grad():
        out = copy.deepcopy(t.model).eval()(t.data.x_test)
    p = t.step(batch).probe
    assert p["layers"] == ["blocks.0", "blocks.1", "blocks.2"]
    for i, h in enumerate(outs):
        a = torch.relu(h)
        assert p["act_mean"][i] == pytest.approx(a.mean().item(), rel=1e-5)
        assert p["act_std"][i] == pytest.approx(a.std().item(), rel=1e-5)
        # Dead: the fraction of units at or below 0 on every example of the batch.
        assert p["act_stuck"][i] == pytest.approx((h <= 0).all(dim=0).float().mean().item(), abs=1e-6)
        assert p["backward_norm"][i] == pytest.approx(h.grad.norm().item(), rel=1e-5)
    # Step 0 evaluates: the recorded test numbers are those of the weights before the update.
    assert p["test_loss"] == pytest.approx(t.loss_fn(out, t.data.y_test).item(), rel=1e-6)
    assert p["test_accuracy"] == pytest.approx((out.argmax(1) == t.data.y_test).float().mean().item())


def test_test_set_is_evaluated_on_its_own_sparser_schedule():
    t = Trainer(Config(**SMALL, probe_every=3, eval_every=7), "cpu")
    probes = [rec.probe for rec in (t.step() for _ in range(30)) if rec.probe is not None]
    assert [p["step"] for p in probes] == list(range(0, 30, 3))
    evaluated = [p["step"] for p in probes if p["test_accuracy"] is not None]
    assert evaluated == [0, 9, 18, 27]  # the first probe at least 7 steps after the last evaluation
    assert all((p["test_loss"] is None) == (p["test_accuracy"] is None) for p in probes)


def test_recurrent_probe_tracks_signal_through_time_and_spectral_radius():
    cfg = Config(model="rnn", activation="tanh", dataset="adding", seq_len=20, hidden_size=16,
                 init="spectral_radius", spectral_radius=1.7, probe_every=1)
    t = Trainer(cfg, "cpu")
    w = t.model.recurrent_matrix().detach().double()
    assert torch.linalg.eigvals(w).abs().max().item() == pytest.approx(1.7, rel=1e-6)
    p = t.step().probe  # measured on the weights before the update, like the rest of the row
    assert p["spectral_radius"] == pytest.approx(1.7, rel=1e-6)
    assert p["max_singular_value"] >= p["spectral_radius"] - 1e-9
    back = p["time_backward_norm"]
    assert len(back) == 20 and np.all(back > 0)
    # Radius 1.7 > 1 with tanh: the signal grows going back in time (it would shrink at radius < 1).
    assert back[0] > back[-1]


def test_one_host_transfer_per_step(monkeypatch):
    t = Trainer(Config(**SMALL, probe_every=1000), "cpu")
    t.step()  # step 0 probes
    calls = []
    for name in ("cpu", "item", "tolist", "numpy", "__float__", "__bool__"):
        orig = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=orig, _n=name, **k: (calls.append(_n),
                                                                                         _o(self, *a, **k))[1])
    t.step()
    assert calls == ["tolist"], calls  # one copy to the host


def test_live_changes_apply_at_the_next_step():
    t = Trainer(Config(**SMALL), "cpu")
    t.step()
    t.set_lr(0.5)
    t.set_clip("norm", 1e-3)
    rec = t.step()
    assert rec.lr == 0.5 and rec.clipped and rec.grad_norm_post_clip <= 1e-3 * (1 + 1e-6)


def test_zero_median_gradient_norm_does_not_crash_the_spike_check():
    # Regression: a huge init saturates the loss to exactly 0 on most batches; the median norm became 0 and
    # the spike message divided by it.
    t = Trainer(Config(init="normal", init_std=2.0, lr=1e-4, seed=1, probe_every=100_000), "cpu")
    t._recent_norms.extend([0.0] * 20)
    x, y = t.sample()
    rec = t.step((x, y))
    assert not [e for e in rec.events if e["kind"] == "spike"]


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_gated_models_label_tanh_saturation_whatever_the_activation_field(model):
    # Regression: a gru with activation=relu was labelled "dead" while its probe measured tanh saturation.
    t = Trainer(Config(model=model, activation="relu", dataset="adding", seq_len=6, hidden_size=8, probe_every=1),
                "cpu")
    assert t.stuck_label == "saturated" and t.step().probe["stuck_label"] == "saturated"


SEED_NET_N01 = Config(init="normal", init_std=1.0, lr=0.01, seed=0, probe_every=1000, steps=50)


def _plain_loop_float64(cfg: Config, steps: int) -> list[tuple[float, float, bool]]:
    """(loss, global L2 gradient norm in float64, finite) per step of a textbook SGD loop on the engine's initial
    model and batch stream; a step whose loss or a gradient element is non-finite is not applied."""
    src = Trainer(cfg, "cpu")
    model = copy.deepcopy(src.model)
    params = list(model.parameters())
    out = []
    for _ in range(steps):
        x, y = src.sample()
        model.zero_grad(set_to_none=True)
        loss = src.loss_fn(model(x), y)
        loss.backward()
        finite = bool(torch.isfinite(loss)) and all(bool(torch.isfinite(p.grad).all()) for p in params)
        norm = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in params))
        out.append((loss.item(), norm, finite))
        if finite:
            with torch.no_grad():
                for p in params:
                    p -= cfg.lr * p.grad
    return out


def test_seed_net_overflowing_float32_norm_is_not_an_explosion():
    """784-512-256-128-10 ReLU at N(0, 1), SGD lr 0.01, seed 0: step 4's gradients are finite with an L2 norm of
    ~5.9e23 (per-tensor float32 norms overflow above ~1.8e19); the run goes non-finite at step 5."""
    ref = _plain_loop_float64(SEED_NET_N01, 6)
    t = Trainer(SEED_NET_N01, "cpu")
    recs = [t.step() for _ in range(6)]
    assert [r.applied for r in recs] == [f for _, _, f in ref] == [True] * 5 + [False]
    for rec, (loss, norm, _) in zip(recs[:5], ref[:5], strict=True):
        assert rec.loss == pytest.approx(loss, rel=1e-5)
        assert rec.grad_norm_pre_clip == pytest.approx(norm, rel=1e-5)
    assert recs[4].grad_norm_pre_clip == pytest.approx(5.9e23, rel=0.01)
    assert np.isfinite(recs[4].grad_norms).all() and recs[4].grad_norms.max() > 1e19  # float32 would say inf
    ev = next(e for e in recs[5].events if e["kind"] == "explosion")
    assert ev["step"] == 5 and ev["last_finite_step"] == 4
    assert ev["last_finite_grad_norm"] == pytest.approx(ref[4][1], rel=1e-5)
    assert t.outcome().explosion_step == 5 and t.outcome().words == "exploded at step 5"


def test_exploding_at_step_0_says_no_finite_step():
    t = Trainer(Config(hidden_sizes=(128,) * 40, init="normal", init_std=1.0, probe_every=1000), "cpu")
    rec = t.step()
    assert not rec.applied
    ev = next(e for e in rec.events if e["kind"] == "explosion")
    assert ev["last_finite_grad_norm"] is None and ev["last_finite_step"] is None
    assert "no finite step" in ev["message"] and "nan" not in ev["message"].split(";")[-1]


@pytest.mark.parametrize("clip,optimizer", [("none", "sgd"), ("value", "sgd"), ("agc", "sgd"), ("value", "adam"),
                                              ("agc", "adam")])
@pytest.mark.parametrize("inject_inf", [False, True])
def test_non_finite_element_is_found_even_where_the_float32_norm_overflows(inject_inf, clip, optimizer):
    """A gradient scaled to ~1e25 overflows its float32 norm: finite elements make a finite step with its true
    norm; one inf element among them makes a non-finite step, named by that parameter. Clipping by value or agc
    changes neither: the norm measured again is the one before the clip (a clamped inf would read finite)."""
    threshold = {"none": 1.0, "value": 0.5, "agc": 0.01}[clip]
    t = Trainer(Config(**SMALL, probe_every=1000, clip=clip, clip_threshold=threshold, optimizer=optimizer), "cpu")
    w = dict(zip(t.names, t.params, strict=True))["blocks.0.fc.weight"]
    before_clip = {}

    def huge(g):
        g = g * 1e25
        if inject_inf:
            g[0, 0] = math.inf
        before_clip["g"] = g
        return g

    w.register_hook(huge)
    batch = t.sample()
    rec = t.step(batch)
    assert rec.applied != inject_inf
    i = t.names.index("blocks.0.fc.weight")
    if inject_inf:
        assert next(e for e in rec.events if e["kind"] == "explosion")["param"] == "blocks.0.fc.weight"
        assert rec.grad_norm_pre_clip == math.inf
    else:
        assert rec.grad_norms[i] == pytest.approx(before_clip["g"].double().norm().item(), rel=1e-6)
        assert rec.grad_norms[i] > 1e24 and math.isfinite(rec.grad_norm_pre_clip)


def test_clip_by_inf_norm_records_l2_norms_and_the_clip_norm_apart():
    cfg = SEED_NET_N01.replace(clip="norm", clip_threshold=1.0, clip_norm_type="inf")
    t = Trainer(cfg, "cpu")
    batch = t.sample()
    model = copy.deepcopy(t.model)
    t.loss_fn(model(batch[0]), batch[1]).backward()
    grads = [p.grad for p in model.parameters()]
    l2 = torch.nn.utils.get_total_norm(grads, 2.0).item()
    max_abs = torch.nn.utils.get_total_norm(grads, math.inf).item()
    coef = min(1.0, 1.0 / (max_abs + 1e-6))
    rec = t.step(batch)
    assert rec.grad_norm_pre_clip == pytest.approx(l2, rel=1e-6)  # ~43100, not the max-abs ~7345
    assert rec.grad_norm_post_clip == pytest.approx(l2 * coef, rel=1e-5)  # ~5.87, not 1
    assert rec.clip_norm == pytest.approx(max_abs, rel=1e-6)
    assert rec.grad_norm_pre_clip > 1e4 > rec.clip_norm > 1e3 and 1 < rec.grad_norm_post_clip < 10


def test_dead_counts_units_inactive_on_the_whole_batch_alike_for_relu_and_leaky_relu():
    """Seed net, Xavier init: a healthy ReLU layer has ~half its pre-activation elements <= 0 but only a few
    percent of units inactive on every example; LeakyReLU, whose negative side passes 1% of the gradient, has
    the same sign pattern at init and so the same first-layer count, not 0 by definition."""
    cfg = Config(init="xavier_normal", probe_every=1000)
    probes = {act: Trainer(cfg.replace(activation=act), "cpu").step().probe for act in ("relu", "leaky_relu")}
    relu, leaky = probes["relu"]["act_stuck"], probes["leaky_relu"]["act_stuck"]
    assert leaky[0] == relu[0]  # identical pre-activations in the first layer
    assert np.all(relu > 0) and np.all(leaky > 0) and np.all(relu < 0.3)
    np.testing.assert_allclose(leaky, relu, atol=0.05)


@pytest.mark.parametrize("model,gates", [("lstm", 4), ("gru", 3)])
def test_gated_spectral_radius_is_the_largest_of_every_gate_block(model, gates):
    cfg = Config(model=model, dataset="adding", seq_len=8, hidden_size=12, probe_every=1)
    t = Trainer(cfg, "cpu")
    w = t.model.recurrent_matrix().detach().double()
    radii = [torch.linalg.eigvals(b).abs().max().item() for b in w.split(12)]
    p = t.step().probe
    assert len(p["gate_radii"]) == len(p["gate_names"]) == gates
    np.testing.assert_allclose(p["gate_radii"], radii, rtol=1e-9)
    assert p["spectral_radius"] == pytest.approx(max(radii), rel=1e-9)


def test_backward_signal_through_time_keeps_values_below_float32_squares():
    """A tanh RNN at radius 0.5 over 100 steps: early-time ‖∂L/∂h_t‖ is ~1e-31, whose float32 square underflows;
    the probe takes the norm in float64, so it equals the float64 norm of the same gradients and is never 0."""
    cfg = Config(model="rnn", activation="tanh", dataset="adding", seq_len=100, hidden_size=64,
                 init="spectral_radius", spectral_radius=0.5, probe_every=1)
    t = Trainer(cfg, "cpu")
    kept = []
    orig = t.model.forward

    def forward(x, probe=None):
        out = orig(x, probe)
        if probe is not None:
            kept.extend(probe[0][0])
        return out

    t.model.forward = forward
    p = t.step().probe
    back = p["time_backward_norm"]
    expected = [h.grad.double().norm().item() for h in kept]
    np.testing.assert_allclose(back, expected, rtol=1e-9)
    assert np.all(back > 0) and back.min() < 1e-19  # float32 squares of these would be 0


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_row_layout_names_each_group_and_follows_a_live_clip_change(optimizer):
    t = Trainer(Config(**SMALL, optimizer=optimizer, probe_every=1000), "cpu")
    for group, at in row_slices(len(t.names)).items():
        assert t.columns[at] == [f"{group}/{n}" for n in t.names]
    rec = t.step()
    assert np.array_equal(rec.row()[t.columns.index(f"weight_norm/{t.names[0]}")], rec.weight_norms[0])
    for mode in ("value", "norm", "none"):  # each mode sends a different transfer: the numbers must follow it
        t.set_clip(mode, 1e-3)
        rec = t.step()
        assert rec.applied and (rec.grad_norm_post_clip < rec.grad_norm_pre_clip) == (mode != "none")
        moved = rec.weight_norms > 0
        assert moved.any() and np.isfinite(rec.update_ratios[moved]).all() and (rec.update_ratios[moved] > 0).all()
