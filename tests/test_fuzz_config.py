"""Fuzz every config entry point: whatever comes in, the answer is a valid Config or a ConfigError that names
the field, on one line. 4,000 + 3,000 + 3,000 = 10,000 generated inputs: garbage strings, NaN, inf, negative
and huge numbers, wrong types, nested junk and unknown keys, mixed with values near each field's limits."""

from __future__ import annotations

import math
from dataclasses import fields

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training.config import FIELDS, Config, ConfigError, from_dict, from_query, parse_value, shown


def fuzz(n: int) -> settings:
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NASTY = [
    "", " ", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e309", "-1e309", "1e-400", "0", "-0", "-1", "0.0",
    "1,2,3", "8,,8", ",", "1, 2", "0x10", "1_000", "١٢٣", "１２", "true", "False", "yes", "None", "null", "[]", "{}",
    "\x00", "\n", "'; DROP TABLE runs; --", "../../etc/passwd", "9" * 5000, "1," * 100, "a" * 10_000,
    -(10**400), 2**63, -(2**63) - 1, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf, -0.0,
    True, False, None, [], {}, [[[]]], {"a": {"b": None}}, (1, 2), [8] * 65, [10**30], [1.5, 2], [True],
]
# Ints past Python's 4,300-digit str() limit: repr() raises on them, so they are built, not listed.
giant_ints = st.integers(4_301, 5_000).map(lambda n: 10**n)
leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
          | st.sampled_from(NASTY) | giant_ints)
junk = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def _near(name: str):
    """Values a user might really send for ``name``: choices, limits, just past the limits, as text or not."""
    m = FIELDS[name].metadata
    if m["choices"] is not None:
        vals = list(m["choices"]) + [c.upper() for c in map(str, m["choices"])] + [" " + str(m["choices"][0])]
        return st.sampled_from(vals)
    if FIELDS[name].type == "bool":
        return st.sampled_from([True, False, "true", "off", "1", "maybe", 2])
    if m["kind"] == "sizes":
        widths = st.integers(min_value=-2, max_value=5000)
        return (st.lists(widths, min_size=0, max_size=70).map(tuple)
                | st.lists(widths, max_size=70).map(lambda w: ",".join(map(str, w))))
    lo, hi = m["lo"], m["hi"]
    edges = st.sampled_from([lo, hi, lo - 1, hi + 1, hi * 10, -hi, lo / 2 if lo else -1e-9])
    inside = (st.integers(min_value=int(lo), max_value=int(hi)) if FIELDS[name].type == "int"
              else st.floats(min_value=lo, max_value=hi))
    return (edges | inside).flatmap(lambda v: st.sampled_from([v, str(v), repr(v)]))


def _good(name: str):
    """A value inside the field's own range (the combination may still be refused)."""
    f, m = FIELDS[name], FIELDS[name].metadata
    if m["choices"] is not None:
        return st.sampled_from(m["choices"])
    if f.type == "bool":
        return st.booleans()
    if m["kind"] == "sizes":
        return st.lists(st.integers(1, 64), min_size=1, max_size=4).map(tuple)
    return (st.integers(int(m["lo"]), int(m["hi"])) if f.type == "int"
            else st.floats(min_value=m["lo"], max_value=m["hi"]))


field_names = st.sampled_from(list(FIELDS))
keys = field_names | st.text(max_size=12) | st.sampled_from(["run", "Lr", "lr ", "__class__", "preset"])
values = st.one_of(junk, field_names.flatmap(_near))


@st.composite
def config_dicts(draw):
    """Mostly well-aimed dicts (known fields, values in or near their range), some junk: about a third pass."""
    d = {}
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.integers(0, 9)) < 8:
            name = draw(field_names)
            d[name] = draw(_good(name)) if draw(st.integers(0, 9)) < 8 else draw(_near(name))
        else:
            d[draw(keys)] = draw(values)
    return d


def _text(v) -> str:
    """What a URL would carry for ``v``."""
    try:
        return v if isinstance(v, str) else str(v)
    except ValueError:  # str() of a >4,300-digit int
        return "9" * 5000


def _refused_properly(e: ConfigError, allowed_fields: set) -> None:
    msg = str(e)
    assert "\n" not in msg and len(msg) < 1000, msg
    assert msg.startswith(f"{e.field}: "), msg
    assert e.field in allowed_fields, (e.field, msg)


def _valid(cfg: Config) -> None:
    assert isinstance(cfg, Config)
    Config(**{f.name: getattr(cfg, f.name) for f in fields(Config)})  # revalidates without raising
    assert from_dict(cfg.to_dict()) == cfg
    assert from_query(cfg.to_query()) == (cfg, [])


@fuzz(4_000)
@given(st.one_of(config_dicts(), config_dicts(), junk))
def test_from_dict_accepts_a_valid_config_or_names_the_field(d):
    try:
        cfg = from_dict(d)
    except ConfigError as e:
        named = {k for k in d if isinstance(k, str)} | {shown(k) for k in d} if isinstance(d, dict) else set()
        _refused_properly(e, set(FIELDS) | {"config"} | named)
    else:
        _valid(cfg)


@fuzz(3_000)
@given(st.one_of(config_dicts().map(lambda d: {k: _text(v) for k, v in d.items()}), config_dicts(), junk))
def test_from_query_always_returns_a_valid_config_and_field_messages(params):
    try:
        cfg, errors = from_query(params)
    except ConfigError as e:
        assert not isinstance(params, dict)  # only a non-mapping is refused outright
        _refused_properly(e, {"query"})
        return
    _valid(cfg)
    for msg in errors:
        assert "\n" not in msg and msg.split(": ", 1)[0] in FIELDS, msg


@fuzz(3_000)
@given(keys | st.integers() | st.none(), st.one_of(junk, field_names.flatmap(_near)))
def test_parse_value_returns_the_field_type_or_names_the_field(name, raw):
    try:
        v = parse_value(name, raw)
    except ConfigError as e:
        _refused_properly(e, {name, shown(name)})
        return
    kind = FIELDS[name].type
    if FIELDS[name].metadata["kind"] == "sizes":
        assert isinstance(v, tuple) and all(type(w) is int for w in v)
    else:
        assert type(v) is {"bool": bool, "int": int, "float": float, "str": str}[kind], (name, raw, v)


def test_a_recurrent_config_survives_the_url_round_trip():
    """Regression (found by the fuzzer): model=rnn and dataset=adding are each refused alone against the default
    MLP on digits, so from_query used to drop both and silently hand back an MLP."""
    cfg = Config(model="rnn", dataset="adding", activation="tanh", hidden_size=32)
    assert from_query(cfg.to_query()) == (cfg, [])
    clash, errors = from_query({"model": "lstm", "activation": "tanh"})  # lstm with digits: the model goes
    assert clash == Config(activation="tanh") and errors[0].startswith("dataset: ")
