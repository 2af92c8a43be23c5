"""The sidebar's lesson panel and speed control.

Each preset is a lesson (training/registry.py): a problem and its fix, differing in one setting, and a claim
the test suite checks. Picking one loads the problem and the speed it is best watched at; the panel says the
claim and loads the problem, the fix, or both side by side when run B can carry the one change.
"""

from __future__ import annotations

import streamlit as st

from training import lessons as LS
from training import registry as R
from training.config import ConfigError

from . import session as S

SPEEDS = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 50.0, S.MAX_SPEED)  # steps per second, slow motion to max
ss = st.session_state


def _speed_option(steps_per_s: float | None):
    return S.MAX_SPEED if steps_per_s is None else min(SPEEDS[:-1], key=lambda v: abs(v - steps_per_s))


def on_preset() -> None:
    """The preset picker: fill the controls with the problem, and the speed with the lesson's own."""
    S.on_preset()
    if ss.w_preset != S.CUSTOM:
        ss.lesson = ss.w_preset
        ss.w_speed = _speed_option(R.PRESETS[ss.w_preset].speed)


def on_speed() -> None:
    """The speed applies to the running training from its next step, like a learning-rate change."""
    runner = S.current_runner()
    if runner is not None and runner.alive:
        runner.set_speed(S.speed())
        st.toast(f"Speed: {ss.w_speed if ss.w_speed == S.MAX_SPEED else f'{ss.w_speed:g} steps/s'}, no restart",
                 icon=":material/speed:")


def load(name: str, which: str) -> None:
    """Put the lesson's problem or fix in run A's controls (run B, when comparing, follows as usual)."""
    cfg = LS.problem(name) if which == "problem" else LS.fix(name)
    S.write_controls(cfg)
    if ss.get("w_compare"):
        S.write_controls(S.b_default(cfg), S.B, S.B_FIELDS)
    ss.w_preset = name if which == "problem" else S.CUSTOM
    ss.lesson = name


def compare(name: str) -> None:
    """The problem as run A and the fix as run B, side by side on identical batches."""
    load(name, "problem")
    ss.w_compare = True
    S.write_controls(LS.fix(name), S.B, S.B_FIELDS)


def speed_control() -> None:
    if "w_speed" not in ss:  # a new session: a reattached run's own pace, or a lesson link's speed
        runner, preset = S.current_runner(), R.PRESETS.get(ss.get("w_preset"))
        if runner is not None and runner.alive:
            ss.w_speed = _speed_option(runner.steps_per_s)
        else:
            ss.w_speed = _speed_option(preset.speed if preset else None)
    st.select_slider("Speed (steps per second)", SPEEDS, key="w_speed", on_change=on_speed,
                     format_func=lambda v: v if v == S.MAX_SPEED else f"{v:g}",
                     help="Slow motion to watch an explosion develop, up to max (no waiting at all). Applies live "
                          "to a running run; a lesson that explodes sets a speed it can be watched at.")


def _showing(name: str) -> str | None:
    """Whether the controls hold the lesson's problem or its fix (None: neither, the lesson was left)."""
    try:
        cfg = S.read_config()
    except ConfigError:  # an invalid value: the sidebar says so; the lesson panel waits
        return None
    return "problem" if cfg == LS.problem(name) else "fix" if cfg == LS.fix(name) else None


def panel() -> None:
    """The lesson under the preset picker: its claim, its one change, and what to load."""
    name = ss.get("lesson") or (ss.w_preset if ss.get("w_preset", S.CUSTOM) != S.CUSTOM else None)
    if name not in R.PRESETS:
        return
    showing = _showing(name)
    if showing is None:
        return
    field, old, new = LS.change(name)
    with st.container(key="lesson"):
        st.caption(f"**Lesson: {name}.** {R.PRESETS[name].claim}")
        st.caption(f"The one change: **{field}** {old} → {new}. The controls hold the **{showing}**.")
        with st.container(horizontal=True, gap="small"):
            st.button("Problem", key="btn_lesson_problem", on_click=load, args=(name, "problem"),
                      disabled=showing == "problem", width="stretch", help=f"Load the problem ({field} = {old})")
            st.button("Fix", key="btn_lesson_fix", on_click=load, args=(name, "fix"), disabled=showing == "fix",
                      width="stretch", help=f"Load the fix ({field} = {new})")
            if field in S.B_FIELDS:
                st.button("Both, A/B", key="btn_lesson_compare", on_click=compare, args=(name,), width="stretch",
                          help="Compare A/B: the problem as run A, the fix as run B, trained side by side")
