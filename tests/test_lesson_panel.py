"""The lab's lesson panel and speed control, through AppTest: a lesson loads its problem at its own speed, the
panel loads the fix or both side by side, and the speed reaches the runner at Start and live."""

from __future__ import annotations

import pytest
import torch

from tests.apptest_helpers import config_in_url, poll, runner_of
from training import lessons as LS
from training import registry as R
from training.config import format_value
from training.engine import Trainer
from training.manager import get_manager


def test_a_lesson_loads_its_problem_at_its_speed_and_the_panel_loads_the_fix(at):
    at.run()
    name = "a step too large"
    at.selectbox(key="w_preset").set_value(name).run()
    assert config_in_url(at) == LS.problem(name)
    assert at.select_slider(key="w_speed").value == R.PRESETS[name].speed
    assert any(R.PRESETS[name].claim in c.value for c in at.caption)
    assert any("The one change: **lr** 0.2 → 0.05" in c.value for c in at.caption)
    at.button(key="btn_lesson_fix").click().run()
    assert config_in_url(at) == LS.fix(name) and at.selectbox(key="w_preset").value == "custom"
    assert any("hold the **fix**" in c.value for c in at.caption)  # the lesson stays on screen with its fix
    at.button(key="btn_lesson_problem").click().run()
    assert config_in_url(at) == LS.problem(name) and at.selectbox(key="w_preset").value == name


def test_a_lesson_whose_change_run_b_can_carry_compares_problem_and_fix_side_by_side(at):
    at.run()
    at.selectbox(key="w_preset").set_value("watch it explode").run()
    at.button(key="btn_lesson_compare").click().run()
    assert at.toggle(key="w_compare").value and at.radio(key="b_clip").value == "norm"
    assert "b_clip" in at.query_params and "b_qk_norm" not in at.query_params  # an MLP's link: no transformer B
    at.button(key="btn_start").click().run()
    r = runner_of(at)
    assert [run.cfg for run in r.runs] == [LS.problem("watch it explode"), LS.fix("watch it explode")]
    assert r.steps_per_s == R.PRESETS["watch it explode"].speed  # throttled from its first step


def test_a_lesson_whose_change_run_b_cannot_carry_offers_no_side_by_side(at):
    at.run()
    at.selectbox(key="w_preset").set_value("fix the init").run()  # init: run B can change it
    assert at.button(key="btn_lesson_compare")
    at.selectbox(key="w_preset").set_value("RNN on long sequences explodes").run()  # the spectral radius: it cannot
    assert not [b for b in at.button if b.key == "btn_lesson_compare"]
    assert [b for b in at.button if b.key == "btn_lesson_fix"]


def test_the_speed_control_changes_a_running_run_live(at):
    at.run()
    at.selectbox(key="w_preset").set_value("a step too large").run()
    at.button(key="btn_start").click().run()
    r = runner_of(at)
    assert r.steps_per_s == 4.0
    at.select_slider(key="w_speed").set_value("max").run()
    poll(at, lambda at: r.steps_per_s is None)
    assert r.alive or r.snapshot().status == "exploded"  # no restart: the same runner


def test_a_reattached_page_shows_the_throttled_runs_own_speed(at):
    runner = get_manager().start(LS.problem("a step too large"), steps_per_s=3.0)
    at.query_params["run"] = runner.id
    at.run()
    assert not at.exception and at.select_slider(key="w_speed").value == 3.0


def test_a_link_to_a_lesson_opens_at_its_speed(at):
    for k, v in LS.problem("a step too large").to_query().items():
        at.query_params[k] = v
    at.run()
    assert at.selectbox(key="w_preset").value == "a step too large"
    assert at.select_slider(key="w_speed").value == R.PRESETS["a step too large"].speed


@pytest.mark.parametrize("name", ["attention logits grow", "log Z drifts without z-loss", "Post-LN needs warmup"])
def test_each_transformer_lesson_compares_problem_and_fix_side_by_side_from_equal_weights(at, name):
    at.run()
    at.selectbox(key="w_preset").set_value(name).run()
    at.button(key="btn_lesson_compare").click().run()
    field, _, new = LS.change(name)
    assert at.toggle(key="w_compare").value and at.session_state[f"b_{field}"] == new
    assert at.query_params[f"b_{field}"] == format_value(new)  # a comparison can be shared before it starts
    at.button(key="btn_start").click().run()
    assert not at.exception
    r = runner_of(at)
    assert [run.cfg for run in r.runs] == [LS.problem(name), LS.fix(name)]
    at.button(key="btn_stop").click().run()
    # The one change draws nothing from the seed: both runs start from the same weights, tensor for tensor.
    a, b = (Trainer(LS.problem(name), "cpu"), Trainer(LS.fix(name), "cpu"))
    shared = dict(b.model.named_parameters())  # qk-layernorm adds its gains and biases; the rest are common
    common = [n for n, _ in a.model.named_parameters() if n in shared]
    assert len(common) == len(a.params)
    for n, p in a.model.named_parameters():
        assert torch.equal(p, shared[n]), n
