"""Session glue: widget state ↔ Config, the URL query parameters, and the run buttons' callbacks.

Every control is a widget whose key is ``w_<field>`` (run B's overrides: ``b_<field>``); its value lives in
``st.session_state`` and is written here only from callbacks or before the widget exists in the run, as
Streamlit requires. Runners live in the process-wide RunManager, so a refresh or a shared link reattaches
through ``?run=<id>``; this module only remembers ids.
"""

from __future__ import annotations

import streamlit as st

from training import config as C
from training import registry as R
from training.config import FIELDS, Config, ConfigError, format_value, from_preset, from_query, parse_value, shown
from training.engine import available_devices
from training.manager import CapacityError, get_manager

from .data import LIVE_FIELDS, live_config, lr_grid, matching_preset

A, B = "w_", "b_"
# What run B may change from A: TRANSFORMER_B are the transformer's mitigations (its lessons' one changes), which
# leave the initial weights equal (a LayerNorm starts at ones and zeros, drawing nothing from the seed).
TRANSFORMER_B = ("qk_norm", "z_loss", "warmup_steps", "norm_position")  # shown, and linked, for a transformer only
B_FIELDS = ("clip", "clip_threshold", "activation", "init", "lr", *TRANSFORMER_B)
CUSTOM = "custom"
# The page sends every control's value with each request, also values it has not been sent yet: a callback's
# fill-in (a preset) reaches the page with the rerun that follows, so a click in between sent the old values back
# and they won (Start once trained 1,000 steps right after a preset set 300). Each full run of the lab records
# the values it draws under a generation number and draws that number last, in a hidden control: a request
# carrying an older number echoed that generation's values, and settle() puts those echoes back to the newest.
DRAWN = "w__drawn"
KEEP_GENERATIONS = 32  # runs the page may lag behind (each was interrupted before drawing its number)
MAX_SPEED = "max"  # the speed control's last stop: no throttle
ss = st.session_state


# Widget state ↔ Config.
def widget_values(cfg: Config, prefix: str = A, names=tuple(FIELDS)) -> dict:
    values = {prefix + n: getattr(cfg, n) for n in names}
    if "hidden_sizes" in names:
        values[prefix + "hidden_sizes"] = ",".join(map(str, cfg.hidden_sizes))
        if prefix == A:
            values["w_depth"], values["w_width"] = len(cfg.hidden_sizes), max(cfg.hidden_sizes)
    return values


def write_controls(cfg: Config, prefix: str = A, names=tuple(FIELDS)) -> None:
    """Set the controls to ``cfg``; call only from a callback or before the widgets are drawn."""
    for k, v in widget_values(cfg, prefix, names).items():
        ss[k] = v


def read_config() -> Config:
    """Run A's config from the controls; raises ConfigError naming the field and what is allowed."""
    values = {n: ss[A + n] for n in FIELDS if A + n in ss}
    if "hidden_sizes" in values:
        values["hidden_sizes"] = parse_value("hidden_sizes", values["hidden_sizes"])
    return Config().replace(**values)


def read_config_b(cfg_a: Config) -> Config:
    try:
        return cfg_a.replace(**{n: ss[B + n] for n in B_FIELDS if B + n in ss})
    except ConfigError as e:
        raise ConfigError(f"run B {e.field}", e.value, e.allowed) from None


def lr_options() -> list[float]:
    """The learning-rate grid plus any off-grid value already chosen (from a link, or a reattached run)."""
    chosen = {ss.get(A + "lr"), ss.get(B + "lr")} - {None}
    return sorted(set(lr_grid()) | chosen)


def init() -> None:
    """First run of a session: controls from the URL (each bad parameter falls back with a warning),
    or from the run named by ``?run=`` when it is still on this server."""
    if "initialized" in ss:
        return
    params = st.query_params.to_dict()
    cfg, errors = from_query(params)
    warnings = [f"URL parameter {e} — using the default" for e in errors]
    ss.run_id, ss.my_runs, ss.paused, ss.start_error = None, [], False, None
    ss.w_compare = False
    run_id = params.get("run")
    runner = get_manager().get(run_id) if run_id else None
    if run_id and runner is None:
        warnings.append(f"URL parameter run: no run {shown(run_id)} on this server (runs end when the server "
                        "restarts) — showing its settings only")
    elif runner is not None:
        snaps = [runner.snapshot(i) for i in range(len(runner.runs))]
        cfg = live_config(snaps[0])
        # Paused by a person stays paused; paused because nobody watched resumes on this look (see watch).
        person_paused = runner.paused and not get_manager().idle_paused(run_id)
        ss.run_id, ss.my_runs, ss.paused = run_id, [run_id], person_paused
        if len(snaps) == 2:
            ss.w_compare = True
            write_controls(live_config(snaps[1]), B, B_FIELDS)
    elif params.get("compare") == "1":  # a shared comparison that was not started yet
        ss.w_compare = True
        b_params = {k[len(B):]: v for k, v in params.items() if k.startswith(B) and k[len(B):] in B_FIELDS}
        cfg_b, b_errors = from_query(b_params, b_default(cfg))
        warnings += [f"URL parameter {B}{e} — using run B's default" for e in b_errors]
        write_controls(cfg_b, B, B_FIELDS)
    write_controls(cfg)
    ss.w_preset = matching_preset(cfg) or CUSTOM
    ss.url_warnings = warnings
    ss.initialized = True


def keep_controls() -> None:
    """Keep the lab's control values while another page is shown.

    Streamlit forgets a widget's value in any run that does not draw it, so a visit to another page would
    wipe the lab's settings; assigning each key to itself before any widget is drawn keeps them.
    """
    for key in [k for k in ss if isinstance(k, str) and k.startswith((A, B))]:
        ss[key] = ss[key]


def sync_url(cfg: Config | None) -> None:
    """Keep the whole configuration (and the run id) in the URL; an invalid config leaves the URL as it was.

    With Compare A/B on: ``compare=1`` and run B's settings as ``b_<field>``, every one of them (B starts from A
    with clipping toggled, not from the defaults), so a comparison can be shared before it is started.
    """
    want = cfg.to_query() if cfg is not None else {k: v for k, v in st.query_params.to_dict().items() if k != "run"}
    if cfg is not None and ss.get("w_compare"):
        want["compare"] = "1"
        try:
            cfg_b = read_config_b(cfg)
            # a field B cannot change for this model (a transformer's, for an MLP) stays out of the link
            want.update({B + n: format_value(getattr(cfg_b, n)) for n in B_FIELDS
                         if R.MODELS[cfg.model].text or n not in TRANSFORMER_B})
        except ConfigError:  # B's controls show the error; the link keeps A and the comparison
            pass
    if ss.get("run_id"):
        want["run"] = ss.run_id
    if st.query_params.to_dict() != want:
        st.query_params.from_dict(want)


# Runs.
def store_error() -> str | None:
    """Why runs are not being saved (the lab still trains): the store did not open, or its last write failed (its
    rows are kept and retried); None when they are."""
    manager = get_manager()
    return manager.store_error or (manager.store.error if manager.store is not None else None)


def current_runner():
    rid = ss.get("run_id")
    return get_manager().get(rid) if rid else None


def session_runners() -> list:
    manager = get_manager()
    return [r for r in (manager.get(rid) for rid in ss.get("my_runs", [])) if r is not None]


def configs_to_start() -> tuple[list[Config], list[str]]:
    cfg = read_config()
    if ss.get("w_compare"):
        return [cfg, read_config_b(cfg)], ["A", "B"]
    return [cfg], [f"#{len(ss.my_runs) + 1}"]


def settle() -> None:
    """Put back each control this request echoed from a generation older than the newest drawn (see DRAWN), unless
    the user changed it since. First thing in every callback that reads or writes controls, and before any draws."""
    gens, seen = ss.get("drawn_gens"), ss.get(DRAWN)
    if not gens or seen not in gens:
        return
    for g in [g for g in gens if g < seen]:
        del gens[g]  # the page has had a newer generation
    newest = max(gens)
    if seen == newest:
        return
    for key, value in gens[newest].items():
        echoed = gens[seen].get(key, value)
        if value != echoed and key in ss and ss[key] == echoed:
            ss[key] = value
    ss[DRAWN] = newest  # once per request: later callbacks of this request see it settled


def remember_drawn() -> None:
    """Record the controls this run of the lab draws, under a new generation number (drawn last, see DRAWN)."""
    gens = ss.setdefault("drawn_gens", {})
    gen = max(gens, default=0) + 1
    gens[gen] = {k: ss[k] for k in ss if isinstance(k, str) and k.startswith((A, B)) and k != DRAWN}
    for g in sorted(gens)[:-KEEP_GENERATIONS]:
        del gens[g]
    ss[DRAWN] = gen


def start() -> None:
    """Start button: the run starts in the script run this click causes (``start_requested``), after every
    callback of the request: a preset picked in the same request has filled the controls by then."""
    settle()
    ss.start_requested = True


def start_requested() -> None:
    """Start the run the Start button asked for, if it did: a new runner from the controls (a runner cannot
    restart); this tab's previous run stops."""
    if not ss.pop("start_requested", False):
        return
    ss.start_error = None
    try:
        cfgs, labels = configs_to_start()
    except ConfigError:  # the sidebar shows it once, at the field
        return
    device = cfgs[0].device
    if device != "auto" and device not in available_devices():
        ss.start_error = (f"device: {device} is not available on this machine; available: auto, "
                          + ", ".join(available_devices()))
        return
    old = current_runner()
    if old is not None and old.alive:
        old.stop(timeout=1.0)
    try:
        runner = get_manager().start(cfgs, labels=labels, steps_per_s=speed())
    except CapacityError as e:
        ss.start_error = f"Cannot start: {e}."
        return
    except (RuntimeError, ValueError) as e:  # e.g. a device that failed to initialise
        ss.start_error = f"Cannot start: {e}"
        return
    ss.run_id = runner.id
    ss.my_runs = [*ss.my_runs, ss.run_id]
    ss.paused = False
    ss.url_warnings = []


def speed() -> float | None:
    """The speed control's steps per second; None at max (the runner never waits)."""
    v = ss.get("w_speed", MAX_SPEED)
    return None if v == MAX_SPEED else float(v)


def pause_resume() -> None:
    """Through the manager, so it knows a person paused the run (an idle pause resumes on the next look)."""
    runner, manager = current_runner(), get_manager()
    if runner is None or not runner.alive:
        return
    try:
        if ss.paused:
            manager.resume(ss.run_id)
        else:
            manager.pause(ss.run_id)
    except CapacityError as e:
        ss.start_error = f"Cannot resume: {e}."
        return
    ss.paused = not ss.paused


def watch(runner) -> None:
    """Tell the manager someone is looking (every refresh): a run nobody watches pauses itself to free its slot."""
    get_manager().touch(runner.id)


def step() -> None:
    runner = current_runner()
    if runner is not None and runner.alive:
        runner.step_once(1)


def stop() -> None:
    runner = current_runner()
    if runner is not None:
        runner.stop(timeout=1.0)


def reset() -> None:
    """Stop and clear the charts; the settings stay."""
    stop()
    ss.run_id, ss.paused, ss.start_error = None, False, None


# Control callbacks.
def mark_custom() -> None:
    """After any edit: the preset picker says 'custom' once the controls no longer match the preset."""
    settle()
    name = ss.get("w_preset", CUSTOM)
    if name == CUSTOM:
        return
    try:
        same = read_config() == from_preset(name)
    except ConfigError:
        same = False
    if not same:
        ss.w_preset = CUSTOM


def on_preset() -> None:
    settle()
    name = ss.w_preset
    if name == CUSTOM:
        return
    cfg = from_preset(name)
    write_controls(cfg)
    if ss.get("w_compare"):
        write_controls(b_default(cfg), B, B_FIELDS)


def b_default(cfg: Config) -> Config:
    """Run B starts as A with clipping toggled: the one-change experiment."""
    return cfg.replace(clip="norm", clip_threshold=1.0) if cfg.clip == "none" else cfg.replace(clip="none")


def on_compare() -> None:
    settle()
    if ss.w_compare:
        try:
            cfg = read_config()
        except ConfigError:
            cfg = Config()
        write_controls(b_default(cfg), B, B_FIELDS)


def on_model() -> None:
    """Keep the other controls compatible with the new architecture, and say what changed."""
    settle()
    model = ss.w_model
    # The config's own rule (C.model_conflicts): every setting it would refuse for this model, with a value it allows.
    changes = {name: value for name, value, _ in C.model_conflicts(model, {n: ss.get(A + n) for n in FIELDS})}
    for name, value in changes.items():
        ss[A + name] = value
    if changes:
        st.toast(f"For the {model} model: " + ", ".join(f"{k} → {v}" for k, v in changes.items()))
    mark_custom()


def fill_widths() -> None:
    settle()
    ss.w_hidden_sizes = ",".join([str(int(ss.w_width))] * int(ss.w_depth))
    mark_custom()


def on_live(prefix: str) -> None:
    """A setting that applies live changed: bring each running run to what the controls now describe, from its next
    step, no restart. Run B follows its own controls in B_FIELDS and A's in the rest (a weight decay)."""
    settle()
    if prefix == A:
        mark_custom()
    runner = current_runner()
    if runner is None or not runner.alive:
        return
    told, pair = [], len(runner.runs) == 2
    for i in range(len(runner.runs)):
        try:
            cfg = read_config() if i == 0 else read_config_b(read_config())
        except ConfigError:
            continue  # the sidebar shows the error; the run keeps its settings
        changed, step = _send_live(runner, i if pair else None, cfg)
        if changed:
            who = f"Run {'AB'[i]}: " if pair else ""
            told.append(f"{who}{', '.join(changed)} from step {step:,}")
    if told:
        st.toast("; ".join(told) + ", no restart", icon=":material/bolt:")


def _send_live(runner, i: int | None, cfg: Config) -> tuple[list[str], int]:
    """Send run ``i`` (None: the only one) each live setting of ``cfg`` it does not use yet and can take; what was
    sent in words, and the step it applies from."""
    runs, snap = (None if i is None else [i]), runner.snapshot(i or 0, history=False)
    now, changed = live_config(snap), []
    if (cfg.clip, cfg.clip_threshold, cfg.clip_norm_type) != (now.clip, now.clip_threshold, now.clip_norm_type):
        runner.set_clip(cfg.clip, cfg.clip_threshold, cfg.clip_norm_type, runs=runs)
        changed.append(R.describe_clip(cfg.clip, cfg.clip_threshold, cfg.clip_norm_type))
    if cfg.lr != now.lr:
        runner.set_lr(cfg.lr, runs=runs)
        changed.append(f"lr {cfg.lr:g}")
    for name, words in (("z_loss", "z-loss"), ("weight_decay", "weight decay")):
        value = getattr(cfg, name)
        if value != getattr(now, name) and C.why_not_live(snap.config, name) is None:
            getattr(runner, f"set_{name}")(value, runs=runs)
            changed.append(f"{words} {value:g}")
    return changed, snap.step


def pending_changes(cfg: Config) -> list[str]:
    """Fields that differ from the live run's config and need a new Start (LIVE_FIELDS apply live where the run
    can take them: a weight decay waits for a Start that also makes the optimizer adamw)."""
    runner = current_runner()
    if runner is None or not runner.alive:
        return []
    running = runner.runs[0].cfg
    return [n for n in FIELDS if getattr(cfg, n) != getattr(running, n)
            and (n not in LIVE_FIELDS or C.why_not_live(running, n) is not None)]
