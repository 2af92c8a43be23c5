"""The dashboard: the whole app through Streamlit's AppTest.

AppTest never fires ``run_every``, so live tests poll with ``at.run()``. Every runner a test starts is stopped
in teardown, so no training thread outlives its test.
"""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from components import session as S
from tests.apptest_helpers import APP, config_in_url, live_figures, live_status, poll, runner_of, shown, values
from training import transformer as TF
from training.config import FIELDS, Config, from_preset
from training.manager import get_manager


def status_step(at) -> int:
    line = live_status(at)
    return line["status"]["runs"][0]["step"] if line else -1


def start(at, preset=None, **widgets):
    if preset:
        at.selectbox(key="w_preset").set_value(preset).run()  # its callback fills the controls first
        widgets = {"w_speed": S.MAX_SPEED, **widgets}  # a lesson may play in slow motion; these tests want max
    for key, value in widgets.items():
        at.session_state[key] = value
    at.button(key="btn_start").click().run()
    assert not at.exception and not at.session_state["start_error"], at.session_state["start_error"]
    return runner_of(at)


def test_every_control_renders_and_changes_the_config(at):
    at.run()
    assert not at.exception
    keys = {w.key for kind in ("selectbox", "radio", "number_input", "text_input", "checkbox", "select_slider")
            for w in getattr(at.sidebar, kind)}
    assert {f"w_{name}" for name in FIELDS if name not in TF.FIELDS} <= keys, "every config field has a control"
    assert not {f"w_{name}" for name in TF.FIELDS} & keys, "the transformer's own fields show for it alone"
    # Dependent inputs are disabled until their switch is on, as in the browser: two passes.
    at.radio(key="w_clip").set_value("norm")
    at.selectbox(key="w_init").set_value("normal")
    at.selectbox(key="w_optimizer").set_value("momentum").run()
    at.number_input(key="w_clip_threshold").set_value(2.5)
    at.radio(key="w_clip_norm_type").set_value("inf")
    at.selectbox(key="w_activation").set_value("tanh")
    at.number_input(key="w_init_std").set_value(0.5)
    at.selectbox(key="w_norm").set_value("layer")
    at.checkbox(key="w_residual").check()
    at.text_input(key="w_hidden_sizes").input("64,64")
    at.number_input(key="w_momentum").set_value(0.8)
    at.select_slider(key="w_lr").set_value(0.002)
    at.number_input(key="w_batch_size").set_value(32)
    at.number_input(key="w_steps").set_value(50)
    at.selectbox(key="w_dataset").set_value("gaussian")
    at.number_input(key="w_seed").set_value(7)
    at.selectbox(key="w_device").set_value("cpu")
    at.number_input(key="w_probe_every").set_value(5)
    at.number_input(key="w_eval_every").set_value(20)
    at.run()
    assert not at.exception and not at.error
    assert config_in_url(at) == Config(
        clip="norm", clip_threshold=2.5, clip_norm_type="inf", activation="tanh", init="normal", init_std=0.5,
        norm="layer", residual=True, hidden_sizes=(64, 64), optimizer="momentum", momentum=0.8, lr=0.002,
        batch_size=32, steps=50, dataset="gaussian", seed=7, device="cpu", probe_every=5, eval_every=20)

    at.number_input(key="w_depth").set_value(4)
    at.number_input(key="w_width").set_value(32)
    at.button(key="btn_fill_widths").click().run()
    assert config_in_url(at).hidden_sizes == (32, 32, 32, 32)

    at.selectbox(key="w_model").set_value("gru")  # the dataset follows: gru needs a sequence task
    at.selectbox(key="w_init").set_value("spectral_radius").run()
    at.number_input(key="w_hidden_size").set_value(16)
    at.number_input(key="w_seq_len").set_value(20)
    at.number_input(key="w_spectral_radius").set_value(0.9)
    at.run()
    cfg = config_in_url(at)
    assert (cfg.model, cfg.dataset, cfg.hidden_size, cfg.seq_len, cfg.init, cfg.spectral_radius) == (
        "gru", "adding", 16, 20, "spectral_radius", 0.9)
    assert cfg.norm == "none" and not cfg.residual  # mlp-only options were switched off for the gru

    at.selectbox(key="w_model").set_value("transformer").run()  # the dataset follows: pycode
    keys = {w.key for kind in ("selectbox", "number_input", "checkbox") for w in getattr(at.sidebar, kind)}
    assert {f"w_{name}" for name in TF.FIELDS} <= keys
    at.number_input(key="w_n_layers").set_value(3)
    at.number_input(key="w_d_model").set_value(48)
    at.number_input(key="w_n_heads").set_value(2)
    at.number_input(key="w_context").set_value(32)
    at.selectbox(key="w_norm_position").set_value("post")
    at.checkbox(key="w_qk_norm").check()
    at.number_input(key="w_z_loss").set_value(1e-4)
    at.number_input(key="w_warmup_steps").set_value(20)
    at.selectbox(key="w_schedule").set_value("cosine")
    at.selectbox(key="w_optimizer").set_value("adamw").run()
    at.number_input(key="w_weight_decay").set_value(0.1).run()
    assert not at.exception and not at.error
    cfg = config_in_url(at)
    assert (cfg.model, cfg.dataset, cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.context, cfg.norm_position) == (
        "transformer", "pycode", 3, 48, 2, 32, "post")
    assert cfg.qk_norm and cfg.z_loss == 1e-4 and (cfg.warmup_steps, cfg.schedule) == (20, "cosine")
    assert (cfg.optimizer, cfg.weight_decay) == ("adamw", 0.1)


def test_start_uses_the_controls_and_the_run_buttons_drive_the_runner(at):
    at.run()
    at.selectbox(key="w_preset").set_value("fix the init").run()
    assert at.session_state["w_init"] == from_preset("fix the init").init
    at.selectbox(key="w_activation").set_value("tanh")
    at.number_input(key="w_steps").set_value(100_000)
    at.text_input(key="w_hidden_sizes").input("32")
    runner = start(at)
    assert runner.runs[0].cfg.activation == "tanh" and runner.runs[0].cfg.hidden_sizes == (32,)
    assert at.selectbox(key="w_preset").value == "custom"
    assert at.query_params["run"] == runner.id
    poll(at, lambda at: status_step(at) > 20)
    assert set(live_figures(at)) == {"chart_loss", "chart_grad", "chart_heatmap", "chart_flow", "chart_weights",
                                     "chart_acts", "chart_theory"}  # six live charts and the theory panel
    at.button(key="btn_pause").click().run()
    poll(at, lambda at: runner.snapshot().status == "paused")
    paused_at = runner.snapshot().step
    at.button(key="btn_step").click().run()
    poll(at, lambda at: runner.snapshot().step == paused_at + 1)
    assert at.button(key="btn_pause").label == "Resume"
    at.button(key="btn_pause").click().run()
    poll(at, lambda at: runner.snapshot().step > paused_at + 5)
    at.button(key="btn_stop").click().run()
    assert not runner.alive and runner.snapshot().status == "stopped"
    at.button(key="btn_reset").click().run()
    assert at.session_state["run_id"] is None and "run" not in at.query_params


def test_watch_it_explode_shows_the_explosion_banner(at):
    at.run()
    start(at, "watch it explode")
    poll(at, lambda at: any("exploded at step" in e.value for e in at.error))
    banner = next(e.value for e in at.error if "exploded at step" in e.value)
    assert "first non-finite gradient in" in banner and "last finite gradient norm" in banner
    assert "turn on clipping" in banner


def test_a_step_too_large_explains_its_explosion_by_the_sharpness_past_two_over_lr(at):
    at.run()
    start(at, "a step too large")
    poll(at, lambda at: any("exploded at step" in e.value for e in at.error))
    at.run()
    assert "The top curvature of the loss passed 2/lr" in " ".join(m.value for m in at.markdown)
    fig = live_figures(at)["chart_sharpness"]
    edge = next(t for t in fig["data"] if t["name"].startswith("edge of stability 2/lr"))
    assert set(values(edge["y"])) == {10.0}  # 2 / 0.2
    assert fig["layout"]["annotations"][0]["text"] == "loss starts climbing"


def test_full_batch_square_loss_and_the_sharpness_probe_come_from_the_url_and_go_back_to_it(at):
    at.query_params.update({"batch_size": "full", "loss": "mse", "sharpness_every": "5", "hidden_sizes": "64,64"})
    at.run()
    assert not at.exception and not at.warning
    assert at.number_input(key="w_batch_size").value == 0
    assert at.selectbox(key="w_loss").value == "mse" and at.number_input(key="w_sharpness_every").value == 5
    at.number_input(key="w_sharpness_every").set_value(20).run()
    cfg = config_in_url(at)
    assert (cfg.batch_size, cfg.loss, cfg.sharpness_every) == (0, "mse", 20) and cfg.full_batch
    assert at.query_params["batch_size"] == "full"


def test_turning_clipping_on_mid_run_caps_the_post_clip_norm_from_that_step(at):
    at.run()
    runner = start(at, "watch it explode", w_lr=0.001, w_steps=100_000)  # survives, with norms far above 1
    poll(at, lambda at: runner.snapshot().step > 10)
    at.radio(key="w_clip").set_value("norm").run()  # threshold 1.0: applied live by the widget's callback
    assert runner.alive, "a live change must not restart the run"
    poll(at, lambda at: any(e["kind"] == "config_change" for e in runner.snapshot().events))
    change = next(e for e in runner.snapshot().events if e["kind"] == "config_change")
    poll(at, lambda at: runner.snapshot().step > change["step"] + 20)
    snap = runner.snapshot()
    steps, post = snap.series("grad_norm_post_clip")
    _, pre = snap.series("grad_norm_pre_clip")
    assert (pre[steps < change["step"]] > 1.0 + 1e-4).any(), "the test needs norms above the threshold"
    assert (post[steps >= change["step"]] <= 1.0 + 1e-4).all()
    assert (pre[steps >= change["step"]] > 1.0).any(), "pre-clip norms are still recorded unclipped"

    at.selectbox(key="w_activation").set_value("tanh").run()  # needs a new model: waits for the next Start
    assert any("Applies on next Start: activation" in i.value for i in at.info)
    assert runner.alive and runner.runs[0].cfg.activation == "relu"


def test_a_transformers_z_loss_and_weight_decay_change_live_per_run_and_are_marked(at):
    at.run()
    at.selectbox(key="w_preset").set_value("log Z drifts without z-loss").run()
    at.toggle(key="w_compare").set_value(True).run()
    runner = start(at, w_speed=S.MAX_SPEED, w_optimizer="adamw", w_d_model=32, w_context=16, w_batch_size=4,
                   w_steps=100_000, b_clip="none")
    assert [(r.cfg.z_loss, r.cfg.weight_decay, r.cfg.optimizer) for r in runner.runs] == [(0.0, 0.0, "adamw")] * 2

    def words(i):
        return [e["message"] for e in runner.snapshot(i).events if e["kind"] == "config_change"]

    poll(at, lambda at: runner.snapshot(1).step > 3)
    at.number_input(key="b_z_loss").set_value(1e-4).run()  # B's own control: B alone
    poll(at, lambda at: words(1) == ["z-loss 0 → 0.0001"])
    at.number_input(key="w_weight_decay").set_value(0.1).run()  # B has no control of its own: it follows A
    poll(at, lambda at: [w for w in words(0) + words(1) if "weight" in w] == ["weight decay 0 → 0.1"] * 2)
    assert runner.alive and words(0) == ["weight decay 0 → 0.1"]
    assert not [i for i in at.info if "Applies on next Start" in i.value]
    assert (runner.snapshot(1).z_loss, runner.snapshot(0).z_loss) == (1e-4, 0.0)
    poll(at, lambda at: status_step(at) > runner.snapshot(0).events[-1]["step"])
    notes = [a["text"] for a in live_figures(at)["chart_loss"]["layout"]["annotations"]]
    assert {"A: weight decay 0 → 0.1", "B: weight decay 0 → 0.1", "B: z-loss 0 → 0.0001"} <= set(notes)


def test_url_parameters_restore_every_control(at):
    at.query_params.update({"activation": "tanh", "lr": "0.003", "clip": "norm", "clip_threshold": "0.5",
                            "hidden_sizes": "64,32", "steps": "40"})
    at.run()
    assert not at.exception and not at.warning
    assert at.selectbox(key="w_activation").value == "tanh"
    assert at.select_slider(key="w_lr").value == 0.003  # off the 1-2-5 grid, kept exactly
    assert at.radio(key="w_clip").value == "norm" and at.number_input(key="w_clip_threshold").value == 0.5
    assert at.text_input(key="w_hidden_sizes").value == "64,32" and at.number_input(key="w_steps").value == 40


def test_bad_url_parameters_warn_and_fall_back_for_those_fields_only(at):
    at.query_params.update({"lr": "abc", "activation": "swish", "steps": "40"})
    at.run()
    assert not at.exception
    warnings = [shown(w.value) for w in at.warning]
    assert "URL parameter lr: 'abc' is not allowed; allowed: 1e-06 to 10 — using the default" in warnings
    assert any(w.startswith("URL parameter activation: 'swish'") for w in warnings)
    assert at.select_slider(key="w_lr").value == 0.01 and at.number_input(key="w_steps").value == 40


def test_invalid_control_value_shows_the_config_error_and_keeps_the_rest(at):
    at.run()
    at.selectbox(key="w_activation").set_value("tanh")
    at.text_input(key="w_hidden_sizes").input("64,abc").run()
    assert not at.exception
    assert any("hidden_sizes: '64,abc' is not allowed" in shown(e.value) for e in at.error)
    at.radio(key="w_clip").set_value("norm").run()
    at.number_input(key="w_clip_threshold").set_value(-1.0).run()
    at.button(key="btn_start").click().run()
    assert at.session_state["run_id"] is None
    (error,) = at.error  # once, not again for the Start
    assert shown(error.value).startswith("hidden_sizes: '64,abc' is not allowed")
    assert at.selectbox(key="w_activation").value == "tanh"
    at.text_input(key="w_hidden_sizes").input("64").run()
    assert any("clip_threshold: -1.0 is not allowed; allowed: 1e-06 to 1e+06" in shown(e.value) for e in at.error)


def test_run_id_in_the_url_reattaches_to_a_live_run(at):
    runner = get_manager().start([from_preset("fix the init", activation="tanh"),
                                  from_preset("fix the init", clip="norm", clip_threshold=0.5)],
                                 labels=["A", "B"], paused=True)
    runner.set_lr(0.002, runs=[0])
    runner.step_once(3)
    at.query_params["run"] = runner.id
    poll(at, lambda at: runner.snapshot().step == 3)
    assert at.session_state["run_id"] == runner.id
    assert at.selectbox(key="w_activation").value == "tanh" and at.select_slider(key="w_lr").value == 0.002
    assert at.toggle(key="w_compare").value and at.radio(key="b_clip").value == "norm"
    assert at.number_input(key="b_clip_threshold").value == 0.5
    assert at.button(key="btn_pause").label == "Resume"


def test_compare_trains_a_and_b_and_applies_b_changes_to_b_only(at):
    at.run()
    at.selectbox(key="w_preset").set_value("watch it explode").run()
    at.toggle(key="w_compare").set_value(True).run()
    assert at.radio(key="b_clip").value == "norm"  # B starts as A with clipping toggled
    runner = start(at, w_lr=0.001, b_lr=0.001, w_steps=100_000)
    a, b = (run.cfg for run in runner.runs)
    assert [r.label for r in runner.runs] == ["A", "B"] and (a.clip, b.clip) == ("none", "norm")
    assert a.replace(clip="norm") == b
    poll(at, lambda at: runner.snapshot(1).step > 5)
    at.select_slider(key="b_lr").set_value(0.0005).run()
    poll(at, lambda at: any(e["kind"] == "config_change" for e in runner.snapshot(1).events))
    assert not [e for e in runner.snapshot(0).events if e["kind"] == "config_change"]
    assert [r["title"] for r in live_status(at)["status"]["runs"]] == ["A", "B"]
    loss = live_figures(at)["chart_loss"]
    assert {"A loss", "B loss"} <= {t.get("name") for t in loss["data"]}


def test_earlier_runs_stay_listed_and_can_be_overlaid(at):
    at.run()
    first = start(at, "watch it explode")
    poll(at, lambda at: not first.alive)
    second = start(at, "watch it explode", w_clip="norm")
    at.multiselect(key="w_overlay").select(first.id).run()
    poll(at, lambda at: not second.alive)
    names = {t.get("name") for t in live_figures(at)["chart_loss"]["data"]}
    assert f"{first.id[:7]} #1 loss" in names  # the legend's short id: "r" and 6 hex digits
    assert len(at.dataframe[0].value) == 2


def test_an_error_in_the_training_thread_shows_in_the_page_and_the_app_keeps_serving(at, monkeypatch):
    from training.engine import Trainer

    def broken(self, batch=None):
        raise RuntimeError("simulated failure inside the step")

    at.run()
    with monkeypatch.context() as m:
        m.setattr(Trainer, "step", broken)
        start(at, w_hidden_sizes="32,16", w_steps=100)
        poll(at, lambda a: any("stopped with an error" in e.value for e in a.error))
    assert any("simulated failure inside the step" in e.value for e in at.error)
    # The app keeps working: a normal run starts and trains after the failed one.
    runner = start(at, w_hidden_sizes="32,16", w_steps=30)
    assert runner.wait(30) and runner.snapshot().status == "finished"


def test_a_comparison_not_started_yet_is_in_the_url_and_a_link_restores_it(at):
    at.run()
    at.selectbox(key="w_preset").set_value("watch it explode").run()
    at.toggle(key="w_compare").set_value(True).run()
    at.radio(key="b_clip").set_value("value").run()
    at.number_input(key="b_clip_threshold").set_value(0.25)
    at.selectbox(key="b_activation").set_value("tanh").run()
    url = dict(at.query_params.items())
    assert url["compare"] == "1" and url["b_clip"] == "value" and url["b_activation"] == "tanh"
    assert config_in_url(at) == from_preset("watch it explode")  # A is unchanged

    shared = AppTest.from_file(APP, default_timeout=30)
    shared.query_params.update({k: (v[0] if isinstance(v, list) else v) for k, v in url.items()})
    shared.run()
    assert not shared.exception and shared.toggle(key="w_compare").value
    assert shared.radio(key="b_clip").value == "value" and shared.number_input(key="b_clip_threshold").value == 0.25
    assert shared.selectbox(key="b_activation").value == "tanh"
    assert shared.selectbox(key="w_activation").value == from_preset("watch it explode").activation


def test_a_bad_run_b_parameter_warns_and_falls_back_to_b_s_default(at):
    at.query_params.update({"compare": "1", "b_clip_threshold": "-3", "b_model": "rnn"})
    at.run()
    assert not at.exception and at.toggle(key="w_compare").value
    assert any("b_clip_threshold: -3.0 is not allowed" in shown(w.value) for w in at.warning)
    assert at.radio(key="b_clip").value == "norm" and at.number_input(key="b_clip_threshold").value == 1.0
    assert "b_model" not in at.session_state  # only the settings run B may change are read


def chart_periods(at) -> dict[str, int]:
    """Each live chart's poll period (ms) as the page was given it."""
    out = {}
    for el in at.get("bidi_component"):
        data = json.loads(el.proto.json) if el.proto.component_name == "gel_plot" else {}
        if data.get("every_ms"):
            out[el.proto.id.rsplit("-", 1)[-1]] = data["every_ms"]
    return out


def test_the_chart_refresh_control_sets_how_often_the_streaming_charts_poll(at):
    at.run()
    runner = start(at, "watch it explode", w_steps=100_000, w_speed=2.0)
    periods = chart_periods(at)
    assert periods["chart_loss"] == periods["chart_grad"] == 1000  # the default: training keeps its core
    at.select_slider(key="w_chart_refresh").set_value(0.25).run()
    periods = chart_periods(at)
    assert periods["chart_loss"] == periods["chart_grad"] == periods["chart_heatmap"] == 250
    assert runner.alive  # a display setting: the run goes on
