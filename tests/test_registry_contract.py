"""The registry's promise: adding an activation is one entry in ``registry.ACTIVATIONS``.

One entry, softplus, is added at runtime (and removed after the test); then every interface must offer it and
use it: the config, the CLI, the URL, the lab's controls and a run started from them, the theory panel's
mean-field numbers and the stability map's χ = 1 line. An option list frozen at import anywhere fails here.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import special
from streamlit.testing.v1 import AppTest
from torch import nn

from components import theory_panel
from tests.apptest_helpers import live_figures, poll
from training import explain, sweep, theory
from training import registry as R
from training.cli import main
from training.config import FIELDS, Config, allowed_text, from_dict, from_query
from training.engine import Trainer
from training.manager import get_manager

APP = str(Path(__file__).resolve().parent.parent / "app.py")
NEW = "softplus"
# softplus(x) = log(1 + e^x), slope the logistic sigmoid; torch turns linear above x = 20 (beta 1), as log1p does.
SOFTPLUS = R.Activation(nn.Softplus, lambda x: np.logaddexp(0.0, x), special.expit,
                        lambda h, a: h < -4.0, "dead", "kaiming_normal")  # softplus'(-4) = 0.018


def _clear_caches() -> None:
    # Keyed by activation name: an entry gone must not leave an answer behind for the next test.
    explain.critical_init_std.cache_clear()
    theory_panel._mlp_theory.cache_clear()
    theory_panel._pascanu.cache_clear()


@pytest.fixture
def softplus(monkeypatch):
    """The registry with one more activation, for this test only."""
    assert NEW not in R.ACTIVATIONS
    _clear_caches()
    monkeypatch.setitem(R.ACTIVATIONS, NEW, SOFTPLUS)
    yield NEW
    monkeypatch.undo()
    _clear_caches()
    assert NEW not in R.ACTIVATIONS


def test_the_new_entry_is_consistent_with_its_torch_module(softplus):
    x = np.linspace(-30.0, 30.0, 2400)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = SOFTPLUS.module()(xt)
    (grad,) = torch.autograd.grad(y.sum(), xt)
    np.testing.assert_allclose(SOFTPLUS.phi(x), y.detach().numpy(), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(SOFTPLUS.dphi(x), grad.numpy(), rtol=1e-8, atol=1e-8)


def test_the_config_accepts_it_and_lists_it(softplus):
    assert Config(activation=softplus).activation == softplus
    assert softplus in allowed_text(FIELDS["activation"])
    assert from_dict({"activation": softplus}).activation == softplus
    with pytest.raises(ValueError, match="rnn model allows tanh or relu"):  # the family's rule still holds
        Config(model="rnn", dataset="adding", activation=softplus)


def test_the_url_reads_it_into_the_config(softplus):
    cfg, errors = from_query({"activation": softplus, "hidden_sizes": "32"})
    assert not errors and cfg.activation == softplus and cfg.hidden_sizes == (32,)


def test_the_cli_parses_it_and_trains_with_it(softplus, tmp_path, capsys):
    assert main(["config", "--activation", softplus]) == 0
    assert json.loads(capsys.readouterr().out)["activation"] == softplus
    out = tmp_path / "run.csv"
    assert main(["run", "--activation", softplus, "--hidden-sizes", "16,16", "--steps", "4", "--quiet",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert len(table) == 4 and np.isfinite(table["loss"]).all()
    assert json.loads((tmp_path / "run.csv.events.json").read_text())  # the run's events (its outcome) were written


def test_the_theory_predicts_it_and_the_map_draws_its_critical_line(softplus):
    cfg = Config(activation=softplus, hidden_sizes=(64,) * 4, init="kaiming_normal")
    pred = explain.mlp_theory(cfg)
    assert len(pred["chi"]) == 4 and all(math.isfinite(c) and c > 0 for c in pred["chi"])
    assert all(math.isfinite(v) for v in pred["hidden_backward_profile"]) and pred["reading"]
    std = explain.critical_init_std(softplus, 128)
    assert std is not None and math.isfinite(std)
    # The line is softplus' own edge: just below it χ(q*) < 1; just above, χ(q*) > 1 or q* no longer exists.
    for scale, below in ((0.99, True), (1.01, False)):
        w2, b2 = theory.init_sigma2("normal", 128, 128, scale * std)
        q = theory.fixed_point(softplus, w2, b2)
        edge = math.inf if not math.isfinite(q) else theory.chi(softplus, w2, b2, q)
        assert (edge < 1) == below, (scale, edge)
    base = Config(activation=softplus, init="normal", hidden_sizes=(128,))
    line = sweep.critical_line(sweep.parse_axis("init_std=0.01:1:9"), sweep.parse_axis("depth=1:8:4"), base, width=128)
    assert line is not None and line.value == std  # the map draws that edge


def test_the_lab_offers_it_and_a_run_starts_with_it(softplus):
    at = AppTest.from_file(APP, default_timeout=30)
    try:
        at.query_params.update({"hidden_sizes": "32,32", "steps": "20", "probe_every": "1"})
        at.run()
        assert not at.exception
        assert softplus in at.selectbox(key="w_activation").options
        at.selectbox(key="w_activation").set_value(softplus).run()
        assert not at.exception and not at.error
        at.button(key="btn_start").click().run()
        assert not at.exception and not at.session_state["start_error"], at.session_state["start_error"]
        runner = get_manager().get(at.session_state["run_id"])
        assert runner.runs[0].cfg.activation == softplus
        poll(at, lambda at: not runner.alive)
        assert runner.snapshot().status == "finished" and not at.error
        theory = live_figures(at)["chart_theory"]  # the theory panel: its mean-field profile, drawn
        predicted = next(t for t in theory["data"] if t["name"].startswith("predicted"))["y"]
        if isinstance(predicted, dict):  # plotly's typed-array form: {"dtype", "bdata"}
            predicted = np.frombuffer(base64.b64decode(predicted["bdata"]), dtype=predicted["dtype"])
        np.testing.assert_allclose(predicted, explain.mlp_theory(runner.runs[0].cfg)["hidden_backward_profile"])
        assert np.isfinite(predicted).all() and len(predicted) == 2
    finally:
        get_manager().stop_all(timeout=5.0)


def _lecun_fill(w, b, cfg, g):
    nn.init.normal_(w, 0.0, w.shape[1] ** -0.5, generator=g)
    if b is not None:
        nn.init.zeros_(b)


def test_an_init_is_one_entry_too(monkeypatch):
    monkeypatch.setitem(R.INITS, "lecun_normal", R.Init(_lecun_fill, lambda fan_in, fan_out, std: 1.0 / fan_in))
    cfg, errors = from_query({"init": "lecun_normal", "activation": "selu", "hidden_sizes": "256,256,256"})
    assert not errors and cfg.init == "lecun_normal"
    w = Trainer(cfg, "cpu").model.blocks[1].fc.weight.detach().double()  # built with the entry's fill
    sigma_w2, _ = theory.init_sigma2("lecun_normal", 256, 256)
    assert float((w**2).mean()) * 256 == pytest.approx(sigma_w2, rel=0.02)  # the theory reads the same entry
    pred = explain.mlp_theory(cfg)
    # The prediction used the entry's σ_w² = 1 (χ between hidden layers 2 and 3 at the predicted q of layer 2).
    assert sigma_w2 == pytest.approx(1.0)
    assert pred["chi"][1] == pytest.approx(theory.chi("selu", 1.0, 0.0, pred["q"][1]))
