"""The lab's controls against the page's stale echoes: a value the server filled in (a preset) and the page has not
been sent yet must not come back and win, and Start always trains what the controls show once every callback of
its request has run."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components import session as S
from training.config import Config, from_preset
from training.manager import get_manager

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PRESET = "watch it explode"


@pytest.fixture
def at():
    app = AppTest.from_file(APP, default_timeout=30)
    app.run()
    yield app
    get_manager().stop_all(timeout=5.0)


def started(at) -> Config:
    assert not at.exception, at.exception
    runner = get_manager().get(at.session_state["run_id"])
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
