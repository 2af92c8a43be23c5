"""The sidebar: preset, run buttons, then the controls in groups (mitigations, compare A/B, model, training).

Option lists come from ``training.registry`` and each help text from the config field's metadata, so a new
activation or init shows up here without touching this file. Values are validated by ``Config`` alone (the
inputs have no bounds of their own): a bad value shows the ConfigError and keeps every other value.
"""

from __future__ import annotations

import streamlit as st

from training import registry as R
from training.config import FIELDS, MAX_DEPTH, Config, ConfigError, allowed_text
from training.devices import available_devices, best_device
from training.sharpness import SUGGESTED_EVERY

from . import lesson, live
from . import session as S
from .data import LIVE_FIELDS
from .panels import plain

ss = st.session_state


def _help(name: str) -> str:
    f = FIELDS[name]
    when = "Applies live to a running run." if name in LIVE_FIELDS else "Applies on next Start."
    return f"{f.metadata['help'][:1].upper()}{f.metadata['help'][1:]} ({allowed_text(f)}). {when}"


def _error_at(key: str) -> None:
    """The config's error under the control it names (``sidebar`` finds it): shown once, where it is fixed."""
    where = ss.get("field_error")
    if where is not None and where[0] == key:
        st.error(plain(f"{where[1]}. Fix it to Start; the other settings are kept."), icon=":material/error:")


def _select(label: str, name: str, prefix: str = S.A, options=None, **kw) -> None:
    kw.setdefault("on_change", S.mark_custom if prefix == S.A else None)
    # The field's choices are read now, not at import: a registry entry added at runtime is an option at once.
    st.selectbox(label, list(options or FIELDS[name].metadata["choices"]), key=prefix + name, help=_help(name), **kw)
    _error_at(prefix + name)


def _number(label: str, name: str, step, prefix: str = S.A, fmt: str | None = None, **kw) -> None:
    kw.setdefault("on_change", S.mark_custom if prefix == S.A else None)
    st.number_input(label, step=step, format=fmt, key=prefix + name, help=_help(name), **kw)
    _error_at(prefix + name)


def _clip_controls(prefix: str) -> None:
    live = {"on_change": S.on_live, "args": (prefix,)}
    st.radio("Gradient clipping", list(R.CLIP_MODES), format_func=lambda m: R.CLIP_MODES[m].label, horizontal=True,
             key=prefix + "clip", help=_help("clip"), **live)
    _error_at(prefix + "clip")
    off = ss[prefix + "clip"] == "none"
    _number("Clip threshold", "clip_threshold", 0.1, prefix, "%g", disabled=off, **live)
    if prefix == S.A:
        st.radio("Norm type", list(R.CLIP_NORM_TYPES), format_func=R.CLIP_NORM_TYPES.get, key="w_clip_norm_type",
                 horizontal=True, disabled=ss.w_clip != "norm", help=_help("clip_norm_type"), **live)
        _error_at("w_clip_norm_type")


def _init_label(name: str) -> str:
    return f"{name} (recurrent only)" if name in R.RECURRENT_ONLY_INITS else name


def _activation_fixed() -> bool:
    """The model family applies its own activation (lstm, gru): the control would change nothing."""
    return R.MODELS[ss.w_model].hidden_activation is not None


def _not_mlp() -> bool:
    """Widths, normalization and residual connections are the MLP's: recurrent nets and the transformer have none."""
    family = R.MODELS[ss.w_model]
    return family.recurrent or family.text


def mitigations() -> None:
    recurrent = _not_mlp()
    st.caption("Clipping and learning rate (and a transformer's z-loss, adamw's weight decay) change a running run "
               "at once; the rest apply on next Start.")
    _clip_controls(S.A)
    _select("Activation", "activation", disabled=_activation_fixed())
    _select("Initialization", "init", format_func=_init_label)
    c1, c2 = st.columns(2)
    with c1:
        _number("Init std", "init_std", 0.05, fmt="%g", disabled=ss.w_init != "normal")
    with c2:
        _number("Spectral radius", "spectral_radius", 0.1, fmt="%g", disabled=ss.w_init != "spectral_radius")
    _select("Normalization", "norm", disabled=recurrent)
    st.checkbox("Residual connections", key="w_residual", on_change=S.mark_custom, disabled=recurrent,
                help=_help("residual"))


def model() -> None:
    recurrent, mlp_off = R.MODELS[ss.w_model].recurrent, _not_mlp()
    _select("Architecture", "model", on_change=S.on_model)
    st.text_input("Hidden widths (input → output)", key="w_hidden_sizes", on_change=S.mark_custom,
                  disabled=mlp_off, help=_help("hidden_sizes"))
    _error_at("w_hidden_sizes")
    c1, c2, c3 = st.columns([2, 2, 2], vertical_alignment="bottom")
    c1.number_input("Depth", min_value=1, max_value=MAX_DEPTH, step=1, key="w_depth", disabled=mlp_off)
    c2.number_input("Width", min_value=1, max_value=FIELDS["hidden_sizes"].metadata["hi"], step=1, key="w_width",
                    disabled=mlp_off)
    c3.button("Set", key="btn_fill_widths", on_click=S.fill_widths, disabled=mlp_off,
              help="Fill the hidden widths with depth × width", width="stretch")
    c1, c2 = st.columns(2)
    with c1:
        _number("Hidden size", "hidden_size", 1, disabled=not recurrent)
    with c2:
        _number("Sequence length", "seq_len", 1, disabled=not recurrent)


def transformer() -> None:
    """The transformer's shape and the mitigations of its instabilities; only for the transformer."""
    c1, c2 = st.columns(2)
    with c1:
        _number("Layers", "n_layers", 1)
        _number("Heads", "n_heads", 1)
        _select("Norm position", "norm_position")
    with c2:
        _number("Width d_model", "d_model", 16)
        _number("Context", "context", 16)
        _select("Positions", "positions")
    c1, c2 = st.columns(2)
    with c1:
        st.checkbox("qk-layernorm", key="w_qk_norm", on_change=S.mark_custom, help=_help("qk_norm"))
    with c2:
        st.checkbox("Tied embeddings", key="w_tie_embeddings", on_change=S.mark_custom, help=_help("tie_embeddings"))
    _number("z-loss", "z_loss", 1e-4, fmt="%g", on_change=S.on_live, args=(S.A,))


def _device_label(name: str) -> str:
    if name == "auto":
        return f"auto ({best_device()})"
    return name if name in available_devices() else f"{name} (not available)"


def training() -> None:
    c1, c2 = st.columns(2)
    with c1:
        _select("Optimizer", "optimizer")
    with c2:
        _number("Momentum", "momentum", 0.01, fmt="%g", disabled=ss.w_optimizer != "momentum")
    st.select_slider("Learning rate (log scale)", S.lr_options(), format_func=lambda v: f"{v:g}", key="w_lr",
                     on_change=S.on_live, args=(S.A,), help=_help("lr"))
    c1, c2 = st.columns(2)
    with c1:
        _number("Warmup steps", "warmup_steps", 10)
    with c2:
        _select("Schedule", "schedule")
    adam = ss.w_optimizer in ("adam", "adamw")
    c1, c2, c3 = st.columns(3)
    with c1:
        _number("β2", "beta2", 0.001, fmt="%g", disabled=not adam)
    with c2:
        _number("ε", "eps", 1e-8, fmt="%g", disabled=not adam)
    with c3:
        _number("Weight decay", "weight_decay", 0.01, fmt="%g", disabled=ss.w_optimizer != "adamw",
                on_change=S.on_live, args=(S.A,))
    c1, c2 = st.columns(2)
    with c1:
        _number("Batch size (0: full)", "batch_size", 1)
    with c2:
        _number("Steps", "steps", 100)
    c1, c2 = st.columns(2)
    with c1:
        _select("Dataset", "dataset")
    with c2:
        _select("Loss", "loss", format_func=lambda n: R.LOSSES[n].label)
    c1, c2 = st.columns(2)
    with c1:
        _number("Seed", "seed", 1)
    with c2:
        _select("Device", "device", options=R.DEVICES, format_func=_device_label)
    c1, c2, c3 = st.columns(3)
    with c1:
        _number("Probe every", "probe_every", 1)
    with c2:
        _number("Test every", "eval_every", 10)
    with c3:
        _number("Sharpness every", "sharpness_every", SUGGESTED_EVERY)  # "+" from off: the suggested schedule


def compare() -> None:
    st.toggle("Compare A/B", key="w_compare", on_change=S.on_compare,
              help="Train A (the controls above) and B side by side, in lockstep on identical batches; "
                   "same seed, so the same initial weights when the architecture and init match.")
    if not ss.w_compare:
        return
    with st.expander("Run B: A with these changes", expanded=True):
        _clip_controls(S.B)
        _select("Activation", "activation", S.B, disabled=_activation_fixed())
        _select("Initialization", "init", S.B, format_func=_init_label)
        st.select_slider("Learning rate", S.lr_options(), format_func=lambda v: f"{v:g}", key="b_lr",
                         on_change=S.on_live, args=(S.B,), help=_help("lr"))
        if R.MODELS[ss.w_model].text:
            _transformer_b()


def _transformer_b() -> None:
    """Run B's transformer mitigations: each lesson's one change, side by side with A."""
    c1, c2 = st.columns(2)
    with c1:
        _select("Norm position", "norm_position", S.B)
        st.checkbox("qk-layernorm", key="b_qk_norm", help=_help("qk_norm"))
    with c2:
        _number("Warmup steps", "warmup_steps", 10, S.B)
        _number("z-loss", "z_loss", 1e-4, S.B, fmt="%g", on_change=S.on_live, args=(S.B,))


def run_buttons() -> None:
    runner = S.current_runner()
    alive = runner is not None and runner.alive
    st.button("Start", key="btn_start", on_click=S.start, type="primary", width="stretch",
              icon=":material/play_arrow:", help="Train from scratch with these settings (stops this tab's "
                                                 "current run)")
    # Two rows of two, whatever the labels: in one row of four, "Resume" (longer than "Pause") pushed Reset down.
    with st.container(horizontal=True, gap="small"):
        st.button("Resume" if ss.paused else "Pause", key="btn_pause", on_click=S.pause_resume, disabled=not alive,
                  width="stretch")
        st.button("Step", key="btn_step", on_click=S.step, disabled=not (alive and ss.paused), width="stretch",
                  help="One training step (while paused)")
    with st.container(horizontal=True, gap="small"):
        st.button("Stop", key="btn_stop", on_click=S.stop, disabled=not alive, width="stretch")
        st.button("Reset", key="btn_reset", on_click=S.reset, disabled=runner is None, width="stretch",
                  help="Stop and clear the charts; the settings stay")


def current_config() -> tuple[Config | None, ConfigError | None]:
    """The config the controls describe (and run B's, when comparing), or the first ConfigError."""
    try:
        cfg = S.read_config()
        if ss.w_compare:
            S.read_config_b(cfg)
        return cfg, None
    except ConfigError as e:
        return None, e


# Controls that show their own field's error under them (_error_at): every field but the two that cannot be invalid.
AT_FIELD = {S.A + n for n in FIELDS if n not in ("lr", "residual")} | {S.B + n for n in S.B_FIELDS if n != "lr"}


def _error_key(e: ConfigError) -> str:
    """The control a ConfigError names: run B's errors say "run B <field>"."""
    field = str(e.field)
    return S.B + field[len("run B "):] if field.startswith("run B ") else S.A + field


def sidebar() -> Config | None:
    """Draw every control; return the valid config they describe (None while a value is invalid)."""
    options = [S.CUSTOM, *R.PRESETS]
    st.selectbox("Preset", options, key="w_preset", on_change=lesson.on_preset,
                 format_func=lambda n: "— custom —" if n == S.CUSTOM else n,
                 help="Each preset is a lesson: it loads a problem; the panel below loads its one-setting fix")
    lesson.panel()
    run_buttons()
    lesson.speed_control()
    live.refresh_control()
    cfg, error = current_config()
    ss.field_error = (_error_key(error), str(error)) if error else None
    if error and ss.field_error[0] not in AT_FIELD:  # no control of its own: here, under the buttons
        st.error(plain(f"{error}. Fix it to Start; the other settings are kept."), icon=":material/error:")
    if ss.start_error:
        st.error(plain(ss.start_error), icon=":material/error:")
    pending = S.pending_changes(cfg) if cfg else []
    if pending:
        st.info("Applies on next Start: " + ", ".join(pending), icon=":material/schedule:")
    with st.expander("Mitigations", expanded=True):
        mitigations()
    compare()  # right under A's mitigations: B is A with some of them changed
    with st.expander("Model", expanded=True):
        model()
    if R.MODELS[ss.w_model].text:
        with st.expander("Transformer", expanded=True):
            transformer()
    with st.expander("Training", expanded=True):
        training()
    with st.container(key="drawn_stamp"):  # last, after every control: see session.DRAWN
        st.html("<style>.st-key-drawn_stamp { display: none; }</style>")
        st.number_input("Controls drawn", key=S.DRAWN, step=1, label_visibility="collapsed")
    return cfg
