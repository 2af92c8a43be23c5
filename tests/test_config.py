import math

import pytest

from training import registry as R
from training.config import FIELDS, Config, ConfigError, from_dict, from_preset, from_query, parse_value


def test_default_is_the_seed_network():
    c = Config()
    assert (c.model, c.hidden_sizes, c.dataset) == ("mlp", (512, 256, 128), "digits")
    assert R.DATASET_DIMS[c.dataset] == (784, 10)  # 784-512-256-128-10


@pytest.mark.parametrize("field,value", [("lr", 50.0), ("lr", 0.0), ("lr", math.nan), ("lr", math.inf),
                                         ("batch_size", 0), ("batch_size", 10**6), ("steps", -1),
                                         ("init_std", -1.0), ("seq_len", 1), ("activation", "swish"),
                                         ("hidden_sizes", ()), ("hidden_sizes", (0,)), ("residual", "yes"),
                                         ("seed", 1.5), ("clip_norm_type", "3")])
def test_bad_value_names_field_value_and_range(field, value):
    with pytest.raises(ConfigError) as e:
        Config(**{field: value})
    msg = str(e.value)
    assert msg.startswith(f"{field}: ") and "allowed" in msg
    assert e.value.field == field


def test_range_is_in_the_message():
    with pytest.raises(ConfigError, match=r"lr: 50.0 is not allowed; allowed: 1e-06 to 10"):
        Config(lr=50.0)


@pytest.mark.parametrize("changes,field", [
    ({"model": "lstm"}, "dataset"),
    ({"dataset": "adding"}, "dataset"),
    ({"model": "rnn", "dataset": "adding", "activation": "gelu"}, "activation"),
    ({"init": "spectral_radius"}, "init"),
    ({"model": "gru", "dataset": "adding", "norm": "batch"}, "norm"),
    ({"hidden_sizes": (4096,) * 4}, "hidden_sizes"),  # 3 x 16.8M weights: over the 50M cap
    ({"hidden_sizes": (8,) * 65}, "hidden_sizes"),  # depth cap
])
def test_combinations_are_checked(changes, field):
    with pytest.raises(ConfigError) as e:
        Config(**changes)
    assert e.value.field == field


def test_parameter_cap_message_names_the_cap():
    with pytest.raises(ConfigError, match="the cap is 50,000,000"):
        Config(hidden_sizes=(4096,) * 4)


def test_param_count_matches_the_built_model():
    from training.engine import Trainer

    for cfg in [Config(hidden_sizes=(32, 16), norm="layer"), Config(model="lstm", dataset="adding", hidden_size=8),
                Config(model="gru", dataset="temporal_order", hidden_size=8), Config(model="rnn", dataset="adding")]:
        t = Trainer(cfg, "cpu")
        assert R.param_count(cfg, t.data.input_dim, t.data.output_dim) == sum(p.numel() for p in t.params)


def test_parse_value_types():
    assert parse_value("hidden_sizes", "64, 32") == (64, 32)
    assert parse_value("residual", "true") is True
    assert parse_value("lr", "1e-3") == 1e-3
    assert parse_value("clip_norm_type", "inf") == "inf"
    for name, raw in [("steps", "ten"), ("lr", "abc"), ("residual", "maybe"), ("steps", 2.5), ("lr", True),
                      ("nonexistent", "1")]:
        with pytest.raises(ConfigError) as e:
            parse_value(name, raw)
        assert e.value.field == name


def test_query_round_trip_restores_every_field():
    c = Config(activation="tanh", init="normal", init_std=0.5, clip="norm", clip_threshold=2.5, lr=0.003,
               hidden_sizes=(64, 64), residual=True, norm="layer", seed=7, batch_size=32)
    back, errors = from_query(c.to_query())
    assert errors == [] and back == c
    assert Config().to_query() == {}


def test_from_query_keeps_good_fields_and_reports_bad_ones():
    c, errors = from_query({"activation": "tanh", "lr": "abc", "steps": "-5", "run": "r1-2"})
    assert c.activation == "tanh" and c.lr == Config().lr and c.steps == Config().steps
    assert len(errors) == 2 and any(e.startswith("lr:") for e in errors) and any(e.startswith("steps:") for e in errors)


def test_from_query_falls_back_when_fields_clash():
    c, errors = from_query({"model": "lstm", "activation": "tanh"})  # lstm needs a sequence dataset
    assert isinstance(c, Config) and errors and c.activation == "tanh"


def test_from_dict_is_strict():
    with pytest.raises(ConfigError):
        from_dict({"lr": 0.1, "bogus": 1})
    assert from_dict({"lr": 0.1, "hidden_sizes": [8, 8]}).hidden_sizes == (8, 8)


def test_every_preset_is_a_valid_config_with_a_summary():
    for name, p in R.PRESETS.items():
        cfg = from_preset(name)
        assert isinstance(cfg, Config) and p.summary
    with pytest.raises(ConfigError, match="preset"):
        from_preset("no such preset")


def test_every_field_has_help_and_a_range_or_choices():
    for name, f in FIELDS.items():
        m = f.metadata
        assert m["help"], name
        assert m["choices"] is not None or m["lo"] is not None or f.type == "bool", name
