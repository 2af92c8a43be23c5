"""A stability map's axes: any numeric, true/false or choice config field, or ``depth`` (hidden layers of one width).

``lr=1e-4:1:9`` is 9 values from 1e-4 to 1, log-spaced when the range is positive and spans more than one decade,
else linear; ``log:``/``lin:`` before the range forces a spacing, and ``lr=0.01,0.1,1`` lists values. Integer
fields round and drop duplicates. A true/false field is an axis of its two values, ``qk_norm=false,true``, and a
choice field one of the names listed, ``norm_position=pre,post``: a cell's coordinates are numbers, so such an
axis holds 0, 1, ... (an index into its ``words``) and hands the config the value itself (False/True, "post").
``Axis.label`` is how every view (the map's ticks and hover, its cell pickers, the CLI, saved files) writes a value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from . import registry as R
from .config import FIELDS, MAX_DEPTH, Config, allowed_text, format_value

MAX_AXIS_VALUES = 64
INT_AXES = {name for name, f in FIELDS.items() if f.type in ("int", int)} - {"seed", "probe_every"} | {"depth"}
FLOAT_AXES = {name for name, f in FIELDS.items() if f.type in ("float", float)}
BOOL_AXES = {name for name, f in FIELDS.items() if f.type in ("bool", bool)}
CHOICE_AXES = {name for name, f in FIELDS.items() if f.metadata["choices"] is not None} - {"device"}  # cells: cpu
AXES = sorted(INT_AXES | FLOAT_AXES | BOOL_AXES | CHOICE_AXES)
BOOL_WORDS = {"false": 0, "true": 1, "0": 0, "1": 1}
TRUE_FALSE = (format_value(False), format_value(True))  # the config's own words, as the CLI and the URL write them


class AxisError(ValueError):
    """A bad axis, said in one line that starts with the axis as written."""


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple  # ints for integer fields, depth and word axes, floats otherwise; ascending, distinct
    scale: str  # "log", "lin" or "list"
    spec: str  # as written (a word axis: in its words), for the metadata and the CLI echo
    words: tuple = ()  # a true/false or choice axis: value i reads words[i]; () for a numeric axis

    def __post_init__(self):
        if self.name in BOOL_AXES and not self.words:  # also a map saved before axes kept their words
            object.__setattr__(self, "words", TRUE_FALSE)

    def label(self, v, digits: int = 6) -> str:
        """How a person reads value ``v``: its word (false, true, post), else the number, a float to ``digits``
        significant digits (6: as the axis holds it) and a batch size of 0 as "full"."""
        return value_text(self.name, v, digits, self.words)

    def value(self, v):
        """``v`` as the config takes it: False/True, a choice's name, or the number."""
        if self.name in BOOL_AXES:
            return bool(v)
        return self.words[int(v)] if self.words else v


def value_text(name: str | None, v, digits: int = 6, words: tuple = ()) -> str:
    """The one rule for writing an axis value (``Axis.label``); ``name`` None: a bare number."""
    if words:
        return words[int(v)]
    if name in INT_AXES:
        return format_value(int(v), name if name in FIELDS else None)  # depth is no field; batch size 0 is "full"
    return f"{float(v):.{digits}g}"


def from_dict(d: dict) -> Axis:
    """An Axis from its metadata (``asdict``, as JSON gives it back: lists for tuples)."""
    return Axis(d["name"], tuple(d["values"]), d["scale"], d["spec"], tuple(d.get("words") or ()))


@dataclass(frozen=True)
class Need:
    """An axis changes nothing unless the base config's ``field`` is one of ``allowed``: a uniform map is a
    confusing way to learn that. ``implied``: a sweep then sets ``allowed[0]`` when the user did not choose."""

    field: str
    allowed: tuple
    why: str
    implied: bool = False


NEEDS = {
    "init_std": Need("init", ("normal",), "init_std only changes the network with --init normal", True),
    "spectral_radius": Need("init", ("spectral_radius",),
                            "spectral_radius only changes the network with --init spectral_radius", True),
    "momentum": Need("optimizer", ("momentum",), "momentum only matters with --optimizer momentum", True),
    "clip_threshold": Need("clip", tuple(m for m in R.CLIP_MODES if m != "none"),
                           "clip_threshold only matters with --clip norm or value", True),
    "hidden_size": Need("model", R.RECURRENT_MODELS,
                        "hidden_size applies to rnn, lstm and gru; use depth for the mlp"),
    "seq_len": Need("dataset", tuple(sorted(R.SEQUENCE_DATASETS)), "seq_len only matters for the sequence datasets"),
    "depth": Need("model", ("mlp",), "depth applies to the mlp model; use hidden_size for recurrent nets"),
    **{name: Need("model", tuple(n for n, m in R.MODELS.items() if m.text), f"{name} applies to the transformer")
       for name in ("n_layers", "d_model", "n_heads", "context", "qk_norm", "tie_embeddings", "z_loss",
                    "norm_position", "positions")},
    "clip_norm_type": Need("clip", ("norm",), "clip_norm_type only matters with --clip norm", True),
    "beta2": Need("optimizer", ("adam", "adamw"), "beta2 only matters with --optimizer adam or adamw", True),
    "eps": Need("optimizer", ("adam", "adamw"), "eps only matters with --optimizer adam or adamw", True),
    "weight_decay": Need("optimizer", ("adamw",), "weight_decay only matters with --optimizer adamw", True),
}


def _limits(name: str) -> tuple[float, float, str]:
    if name == "depth":
        return 1, MAX_DEPTH, f"allowed: 1 to {MAX_DEPTH} hidden layers"
    f = FIELDS[name]
    return f.metadata["lo"], f.metadata["hi"], allowed_text(f)


def _number(text: str, what: str, spec: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise AxisError(f"{spec}: {what} {text!r} is not a number") from None
    if not math.isfinite(v):
        raise AxisError(f"{spec}: {what} {text!r} is not a finite number")
    return v


def _range(rng: str, spec: str, forced: str | None) -> tuple[list[float], str]:
    """``lo:hi:n`` → (values, scale)."""
    parts = rng.split(":")
    if len(parts) != 3:
        raise AxisError(f"{spec}: expected lo:hi:n (three parts), got {len(parts)}")
    lo, hi = _number(parts[0], "lo", spec), _number(parts[1], "hi", spec)
    n = _number(parts[2], "n", spec)
    if not n.is_integer() or not 1 <= n <= MAX_AXIS_VALUES:
        raise AxisError(f"{spec}: n must be a whole number from 1 to {MAX_AXIS_VALUES}")
    if lo > hi:
        raise AxisError(f"{spec}: lo {lo:g} is above hi {hi:g}")
    scale = forced or ("log" if lo > 0 and hi / lo > 10 else "lin")
    if scale == "log" and lo <= 0:
        raise AxisError(f"{spec}: a log axis needs lo > 0")
    space = np.geomspace if scale == "log" else np.linspace
    return ([lo] if n == 1 else space(lo, hi, int(n)).tolist()), scale


def parse_axis(spec: str) -> Axis:
    """``name=lo:hi:n``, ``name=log:lo:hi:n``, ``name=lin:lo:hi:n``, ``name=v1,v2,...`` or ``name=v`` → Axis."""
    spec = spec.strip()
    name, sep, rng = spec.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not rng.strip():
        raise AxisError(f"{spec or '(empty)'}: expected name=lo:hi:n, e.g. lr=1e-4:1:9")
    if name not in AXES:
        raise AxisError(f"{spec}: {name!r} is not a numeric, true/false or choice config field; "
                        f"axes: {', '.join(AXES)}")
    if name in BOOL_AXES:
        return _bool_axis(name, rng.strip(), spec)
    if name in CHOICE_AXES:
        return _choice_axis(name, rng.strip(), spec)
    m = re.fullmatch(r"(log|lin):(.*)", rng.strip())
    forced = m.group(1) if m else None
    rng = m.group(2) if m else rng.strip()
    if "," in rng or ":" not in rng:  # a list, or one value
        if forced:
            raise AxisError(f"{spec}: log:/lin: go with a range lo:hi:n, not a list")
        vals, scale = [_number(p.strip(), "value", spec) for p in rng.split(",") if p.strip()], "list"
    else:
        vals, scale = _range(rng, spec, forced)
    if name in INT_AXES:
        vals = [int(round(v)) for v in vals]
    else:
        vals = [float(f"{v:.6g}") for v in vals]  # 0.000316228, not 0.00031622776601683794: readable in a URL
    vals = sorted(set(vals))
    if not vals:
        raise AxisError(f"{spec}: no values")
    lo_ok, hi_ok, allowed = _limits(name)
    bad = [v for v in vals if not lo_ok <= v <= hi_ok]
    if bad:
        raise AxisError(f"{spec}: {name} = {bad[0]:g} is out of range; {allowed}")
    return Axis(name, tuple(vals), scale, spec)


def _bool_axis(name: str, rng: str, spec: str) -> Axis:
    """``qk_norm=false,true`` (or 0,1, or one value) → the axis of 0 and 1, its spec in words."""
    words = [w.strip().lower() for w in rng.split(",") if w.strip()]
    bad = [w for w in words if w not in BOOL_WORDS]
    if bad or not words:
        raise AxisError(f"{spec}: {name} takes false, true or both (false,true), not {bad[0] if bad else rng!r}")
    values = tuple(sorted({BOOL_WORDS[w] for w in words}))
    return Axis(name, values, "list", f"{name}={','.join(TRUE_FALSE[v] for v in values)}", TRUE_FALSE)


def _choice_axis(name: str, rng: str, spec: str) -> Axis:
    """``norm_position=post,pre`` → the axis of 0, 1, ... over the names listed, in the field's order."""
    choices = list(FIELDS[name].metadata["choices"])
    names = {w.strip() for w in rng.split(",") if w.strip()}
    bad = sorted(names - set(choices))
    if bad or not names:
        raise AxisError(f"{spec}: {name} = {bad[0] if bad else rng!r} is not one of {', '.join(choices)}")
    words = tuple(c for c in choices if c in names)
    return Axis(name, tuple(range(len(words))), "list", f"{name}={','.join(words)}", words)


def implied(base: Config, axes: Iterable[str], chosen: Iterable[str] = ()) -> dict:
    """Changes that make ``axes`` matter, for fields not in ``chosen`` (e.g. an init_std axis → init normal)."""
    chosen = set(chosen)
    needs = [NEEDS[a] for a in axes if a in NEEDS and NEEDS[a].implied]
    return {n.field: n.allowed[0] for n in needs
            if n.field not in chosen and getattr(base, n.field) not in n.allowed}


def check_applies(axis: Axis, base: Config) -> None:
    """AxisError when ``axis`` would change nothing on ``base``."""
    need = NEEDS.get(axis.name)
    if need is not None and getattr(base, need.field) not in need.allowed:
        raise AxisError(f"{axis.spec}: {need.why}")
