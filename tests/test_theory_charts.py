import numpy as np
import pytest

from components.theory import backward_signal_figure, hidden_weight_grad_norms, spectral_figure
from training.config import from_preset
from training.engine import Trainer
from training.explain import mlp_theory


def _trace(fig, prefix):
    return next(t for t in fig.data if t.name.startswith(prefix))


def test_backward_signal_figure_draws_prediction_and_measurements_relative_to_last_layer():
    cfg = from_preset("watch it explode", probe_every=1)
    t = Trainer(cfg, "cpu")
    rec = t.step()
    pred = mlp_theory(cfg)["hidden_backward_profile"]
    wg = hidden_weight_grad_norms(t.names, rec.grad_norms)
    fig = backward_signal_figure(pred, rec.probe, rec.probe, wg)
    np.testing.assert_allclose(_trace(fig, "predicted").y, pred)
    measured = np.asarray(_trace(fig, "measured, latest").y)
    b = rec.probe["backward_norm"]
    np.testing.assert_allclose(measured, b / b[-1])
    assert measured[-1] == 1.0 and measured[0] > 10  # grows toward the input, as the prediction says
    # The weight-gradient norms are the blocks' fc.weight norms, taken from the recorded step.
    idx = [t.names.index(f"blocks.{i}.fc.weight") for i in range(3)]
    np.testing.assert_allclose(wg, rec.grad_norms[idx])
    np.testing.assert_allclose(_trace(fig, "‖∂L/∂W‖").y, wg / wg[-1])


def test_backward_signal_figure_without_theory_still_shows_measurements():
    fig = backward_signal_figure(None, {"step": 0, "backward_norm": np.array([4.0, 2.0, 1.0])}, None)
    assert [t.name for t in fig.data] == ["measured, first probe (step 0)"]
    assert list(fig.data[0].y) == [4.0, 2.0, 1.0]


def test_spectral_figure_draws_the_pascanu_bound_and_skips_non_finite_norms():
    probes = [{"step": 0, "spectral_radius": 3.0, "max_singular_value": 4.5},
              {"step": 10, "spectral_radius": 3.1, "max_singular_value": 4.7}]
    fig = spectral_figure(probes, np.array([0, 10, 11]), np.array([1.0, 50.0, np.inf]), bound=1.0)
    bound = _trace(fig, "σ₁ = 1/γ")
    assert list(bound.y) == [1.0, 1.0]
    assert list(_trace(fig, "spectral radius").y) == [3.0, 3.1]
    assert list(_trace(fig, "grad norm").y) == pytest.approx([1.0, 50.0])
    marker = _trace(fig, "✕ non-finite")
    assert list(marker.x) == [11] and marker.y[0] > 50.0


# ---- readable for a student -----------------------------------------------------------------------------------

from types import SimpleNamespace  # noqa: E402

from components.theory import log_axis, tick_text  # noqa: E402
from components.theory_panel import panel_title  # noqa: E402
from training import outcome as O  # noqa: E402
from training.config import Config  # noqa: E402


def test_log_axis_labels_every_decade_with_its_exponent():
    assert [tick_text(v) for v in (1e-5, 0.01, 1.0, 1000.0, 1e4, 2e7)] == ["10⁻⁵", "0.01", "1", "1000", "10⁴",
                                                                            "2×10⁷"]
    axis = log_axis([1.0, 3.0, 1450.0], "ratio")
    assert axis["type"] == "log" and axis["tickvals"] == [1.0, 10.0, 100.0, 1000.0, 10000.0]
    assert axis["ticktext"] == ["1", "10", "100", "1000", "10⁴"]  # a 1.45e3× change reads as one
    assert axis["title"]["standoff"] > 0 and axis["automargin"]
    short = log_axis([1.0, 1.45])  # under a decade: 1-2-5 steps, never a lone tick
    assert len(short["tickvals"]) >= 2 and "1" in short["ticktext"]
    wide = log_axis([44.7, 2.7e7, 1.6e13, 9e18])
    assert len(wide["tickvals"]) <= 9 and all("×" in t or "⁰" in t or t.startswith("10") for t in wide["ticktext"])


def test_backward_signal_axes_are_readable_log_axes():
    fig = backward_signal_figure([1450.0, 40.0, 1.0], {"step": 0, "backward_norm": np.array([900.0, 30.0, 1.0])},
                                 None, np.array([2.0, 1.5, 1.0]))
    left, right = fig.layout.yaxis, fig.layout.yaxis2
    assert left.type == right.type == "log"
    assert list(left.ticktext) == ["1", "10", "100", "1000", "10⁴"] and left.title.standoff > 0


def test_recurrent_axes_go_log_when_the_radius_runs_away_and_name_the_gate_blocks():
    probes = [{"step": 0, "spectral_radius": 3.0, "max_singular_value": 4.5},
              {"step": 10, "spectral_radius": 6000.0, "max_singular_value": 9e3}]
    fig = spectral_figure(probes, np.array([0, 10]), np.array([44.7, 9e18]), bound=1.0)
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "log"
    assert "10¹⁸" in fig.layout.yaxis2.ticktext or "10¹⁹" in fig.layout.yaxis2.ticktext
    gated = [{"step": 0, "spectral_radius": 1.3, "max_singular_value": 2.0, "gate_names": ("input", "forget",
              "cell", "output"), "gate_radii": np.array([1.1, 1.3, 1.0, 0.9])}]
    fig = spectral_figure(gated, np.array([0]), np.array([1.0]), bound=1.0)
    trace = _trace(fig, "spectral radius")
    assert trace.name == "spectral radius ρ, largest of the 4 gate blocks" and "forget 1.3" in trace.hovertext[0]


def _snap(status, events=(), probes=()):
    latest = SimpleNamespace(events=list(events), loss=0.1, step=9)
    return SimpleNamespace(status=status, events=list(events), probes=list(probes), latest=latest, step=10,
                           config=Config())


def test_panel_title_says_what_the_run_did():
    exploded = O.Outcome("exploded", "x", 5).event(5)
    assert panel_title(_snap("exploded", [exploded])) == "Why it explodes"
    for label in ("learned", "stuck", "vanished"):
        title = panel_title(_snap("finished", [O.Outcome(label, "x").event(9)]))
        assert "explodes" not in title
    assert panel_title(_snap("finished", [O.Outcome("vanished", "x").event(9)])) == "Why it vanishes"
    fading = {"step": 0, "backward_norm": np.array([1e-4, 1e-2, 1.0])}
    assert panel_title(_snap("running", probes=[fading])) == "Gradient flow: fading toward the input"
    assert "explodes" not in panel_title(_snap("running"))


def test_the_reading_states_the_ratio_the_chart_draws():
    cfg = Config(init="normal", init_std=1.0)
    pred = mlp_theory(cfg)
    ratio = pred["hidden_backward_profile"][0]  # what the chart's left panel draws at the first hidden layer
    text = pred["reading"]
    assert f"~{ratio:.3g}× larger" in text and "relative to the last hidden layer" in text
    words, formula = text.index("weights' scale σ_w²"), text.index("χ = σ_w² · E[φ′(h)²]")
    assert words < formula  # in words first, then the formula


def test_time_chart_names_the_largest_gate_block_and_the_stuck_units():
    from components.charts import time_figure

    p = Trainer(Config(model="lstm", dataset="adding", seq_len=8, hidden_size=12, probe_every=1), "cpu").step().probe
    fig = time_figure(p)
    best = p["gate_names"][int(np.argmax(p["gate_radii"]))]
    assert f"largest of the 4 gate blocks ({best})" in fig.layout.title.text
    assert any(t.name == "saturated units (whole batch)" for t in fig.data)
    assert f"{p['spectral_radius']:.3g}" in fig.layout.title.text


def test_the_figures_keep_their_two_panel_and_right_axis_layouts():
    """Built as plain dicts (no make_subplots): the panels, their titles and the right-hand axis as before."""
    fig = backward_signal_figure([3.0, 2.0, 1.0], {"step": 0, "backward_norm": np.array([4.0, 2.0, 1.0])}, None,
                                 np.array([2.0, 1.5, 1.0]))
    assert [(t.xaxis, t.yaxis) for t in fig.data] == [("x", "y"), ("x", "y"), ("x2", "y2")]
    assert list(fig.layout.xaxis.domain) == [0.0, 0.46] and list(fig.layout.xaxis2.domain) == [0.54, 1.0]
    assert [a.text.split(" ")[0] for a in fig.layout.annotations] == ["backward", "weight"]
    assert fig.layout.hovermode == "closest" and fig.layout.height == 340
    fig = spectral_figure([{"step": 0, "spectral_radius": 3.0, "max_singular_value": 4.5}], np.array([0, 1]),
                          np.array([1.0, 2.0]), bound=1.0)
    assert _trace(fig, "grad norm").yaxis == "y2" and _trace(fig, "spectral radius").yaxis == "y"
    assert fig.layout.yaxis2.overlaying == "y" and fig.layout.yaxis2.side == "right"
