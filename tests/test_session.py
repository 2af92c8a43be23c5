"""The lab's controls against the page's stale echoes: a value the server filled in (a preset) and the page has not
been sent yet must not come back and win, and Start always trains what the controls show once every callback of
its request has run. Then components/session.py's functions on a plain state, without a page: controls ↔ Config,
run B, the generations of drawn values, the preset picker, the model's compatible settings."""

from __future__ import annotations

import pytest

from components import session as S
from tests.apptest_helpers import runner_of
from training.config import Config, ConfigError, from_preset

PRESET = "watch it explode"


@pytest.fixture
def at(at):
    """The lab, run once: the page as a visitor first sees it."""
    at.run()
    return at


def started(at) -> Config:
    assert not at.exception, at.exception
    runner = runner_of(at)
    assert runner is not None, at.session_state["start_error"]
    return runner.runs[0].cfg


def test_start_right_after_a_preset_trains_the_preset_not_the_echoed_old_steps(at):
    """The preset's rerun reached the server, not the page: the Start click echoes the page's old values (steps
    1,000 and the generation of controls it last received)."""
    want = from_preset(PRESET)
    assert Config().steps != want.steps
    old_gen, old_steps = at.session_state[S.DRAWN], at.number_input(key="w_steps").value
    at.selectbox(key="w_preset").set_value(PRESET).run()
    assert at.session_state["w_steps"] == want.steps
    at.number_input(key=S.DRAWN).set_value(old_gen)  # what the page still holds
    at.number_input(key="w_steps").set_value(old_steps)
    at.button(key="btn_start").click().run()
    cfg = started(at)
    assert cfg == want
    assert at.selectbox(key="w_preset").value == PRESET and at.number_input(key="w_steps").value == want.steps


def test_a_preset_and_start_in_one_request_train_the_preset(at):
    """Both reach the server together (the preset's rerun had not started): Start waits for the preset's fill."""
    at.selectbox(key="w_preset").set_value(PRESET)
    at.button(key="btn_start").click().run()
    assert started(at) == from_preset(PRESET)


def test_an_edit_on_a_stale_page_is_kept(at):
    """A value the user changed is theirs, however old the rest of the page is."""
    old_gen = at.session_state[S.DRAWN]
    at.selectbox(key="w_preset").set_value(PRESET).run()
    at.number_input(key=S.DRAWN).set_value(old_gen)
    at.number_input(key="w_steps").set_value(777)
    at.button(key="btn_start").click().run()
    assert started(at).steps == 777


def test_an_edit_after_the_preset_arrived_is_kept(at):
    at.selectbox(key="w_preset").set_value(PRESET).run()
    at.number_input(key="w_steps").set_value(1000)  # back to the old value, on purpose, on an up-to-date page
    at.button(key="btn_start").click().run()
    assert started(at).steps == 1000


def test_a_stale_echo_of_the_preset_does_not_undo_marking_it_custom(at):
    """An edit turns the picker to custom; a click echoing the picker's old value must not refill the preset."""
    at.selectbox(key="w_preset").set_value(PRESET).run()
    gen = at.session_state[S.DRAWN]
    at.number_input(key="w_steps").set_value(40).run()
    assert at.session_state["w_preset"] == S.CUSTOM
    at.number_input(key=S.DRAWN).set_value(gen)
    at.selectbox(key="w_preset").set_value(PRESET)  # the page had not been sent "custom" yet
    at.button(key="btn_start").click().run()
    cfg = started(at)
    assert cfg.steps == 40 and at.session_state["w_preset"] == S.CUSTOM


def sidebar_order(at) -> list[str]:
    """The sidebar's widgets and errors in page order: a widget by its key, an error as "error"."""
    order = []
    for node in at.sidebar:
        if type(node).__name__ == "Error":
            order.append("error")
        elif getattr(node, "key", None):
            order.append(node.key)
    return order


@pytest.mark.parametrize(("key", "value", "kind"), [("w_hidden_sizes", "64,abc", "text_input"),
                                                    ("w_steps", 0, "number_input"),
                                                    ("w_clip_threshold", -1.0, "number_input")])
def test_an_invalid_setting_shows_its_error_once_right_under_its_field(at, key, value, kind):
    if key == "w_clip_threshold":
        at.radio(key="w_clip").set_value("norm").run()
    getattr(at, kind)(key=key).set_value(value).run()
    at.button(key="btn_start").click().run()
    assert not at.exception and at.session_state["run_id"] is None
    order = sidebar_order(at)
    assert order.count("error") == 1, order
    assert order[order.index("error") - 1] == key, order
    assert key[2:] in at.error[0].value.replace("\\", "")


class State(dict):
    """A stand-in for ``st.session_state`` outside a script run: a dict also read and written as attributes."""

    __getattr__ = dict.__getitem__
    __setattr__ = dict.__setitem__


@pytest.fixture
def state(monkeypatch) -> State:
    """The session module's functions on a plain state, without a page: the controls hold ``Config()``."""
    ss = State()
    monkeypatch.setattr(S, "ss", ss)
    S.write_controls(Config())
    ss.update(w_preset=S.CUSTOM, w_compare=False, my_runs=[])
    return ss


def test_the_controls_and_the_config_convert_both_ways(state):
    cfg = from_preset(PRESET).replace(hidden_sizes=(64, 32, 16))
    S.write_controls(cfg)
    assert state["w_hidden_sizes"] == "64,32,16" and (state["w_depth"], state["w_width"]) == (3, 64)
    assert S.read_config() == cfg


def test_run_b_is_a_with_clipping_toggled_and_its_errors_name_run_b(state):
    a = Config()
    assert S.b_default(a).clip == "norm" and S.b_default(S.b_default(a)) == a.replace(clip_threshold=1.0)
    S.write_controls(S.b_default(a), S.B, S.B_FIELDS)
    assert S.read_config_b(a) == S.b_default(a)
    state["b_lr"] = -1.0
    with pytest.raises(ConfigError) as e:
        S.read_config_b(a)
    assert e.value.field == "run B lr"


def test_a_generation_the_page_echoes_is_put_back_to_the_newest_but_a_users_edit_is_kept(state):
    S.remember_drawn()
    old = state[S.DRAWN]
    S.write_controls(from_preset(PRESET))  # a callback's fill-in, drawn by the next run
    S.remember_drawn()
    newest = state[S.DRAWN]
    state.update({S.DRAWN: old, "w_steps": Config().steps, "w_lr": 0.5})  # the page's echo, and one edit
    S.settle()
    assert state["w_steps"] == from_preset(PRESET).steps  # the echo is undone
    assert state["w_lr"] == 0.5  # the edit stays
    assert state[S.DRAWN] == newest
    S.settle()  # the next request carries the newest generation: the page is done with the older ones
    assert list(state["drawn_gens"]) == [newest]


def test_only_the_last_generations_are_kept(state):
    for _ in range(S.KEEP_GENERATIONS + 5):
        S.remember_drawn()
    gens = state["drawn_gens"]
    assert len(gens) == S.KEEP_GENERATIONS and max(gens) == state[S.DRAWN] == S.KEEP_GENERATIONS + 5


def test_an_edit_that_leaves_the_preset_marks_the_picker_custom(state):
    S.write_controls(from_preset(PRESET))
    state["w_preset"] = PRESET
    S.mark_custom()
    assert state["w_preset"] == PRESET  # still the preset's values
    state["w_steps"] = 40
    S.mark_custom()
    assert state["w_preset"] == S.CUSTOM


def test_depth_and_width_fill_the_hidden_sizes(state):
    state.update(w_depth=3, w_width=24)
    S.fill_widths()
    assert state["w_hidden_sizes"] == "24,24,24" and S.read_config().hidden_sizes == (24, 24, 24)


def test_a_recurrent_model_brings_compatible_settings_and_says_which(state, monkeypatch):
    toasts = []
    monkeypatch.setattr(S.st, "toast", lambda text, **_: toasts.append(text))
    state.update(w_model="rnn", w_activation="gelu", w_norm="layer", w_residual=True)
    S.on_model()
    assert (state["w_dataset"], state["w_activation"], state["w_norm"], state["w_residual"]) == (
        "adding", "tanh", "none", False)
    assert toasts == ["For the rnn model: dataset → adding, activation → tanh, norm → none, residual → False"]
    S.read_config()  # a valid config again


def test_speed_learning_rates_and_labels(state):
    assert S.speed() is None  # no speed control drawn yet: max
    state["w_speed"] = 4
    assert S.speed() == 4.0
    state["w_lr"] = 0.0123  # off the grid: from a link
    assert 0.0123 in S.lr_options() and 0.01 in S.lr_options()
    state.update(my_runs=["r1", "r2"])
    assert S.configs_to_start()[1] == ["#3"]
    state.update(w_compare=True)
    S.on_compare()
    cfgs, labels = S.configs_to_start()
    assert labels == ["A", "B"] and cfgs[1] == S.b_default(cfgs[0])
