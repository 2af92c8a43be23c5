import math

import pytest

from training import config as C
from training import registry as R
from training.config import FIELDS, Config, ConfigError, from_dict, from_preset, from_query, parse_value


def test_default_is_the_seed_network():
    c = Config()
    assert (c.model, c.hidden_sizes, c.dataset) == ("mlp", (512, 256, 128), "digits")
    assert R.DATASET_DIMS[c.dataset] == (784, 10)  # 784-512-256-128-10


@pytest.mark.parametrize("field,value", [("lr", 50.0), ("lr", 0.0), ("lr", math.nan), ("lr", math.inf),
                                         ("batch_size", -1), ("batch_size", 10**6), ("steps", -1),
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


@pytest.mark.parametrize("model", list(R.MODELS))
@pytest.mark.parametrize("start", [Config(norm="layer", residual=True, activation="gelu"),
                                   Config(model="lstm", dataset="temporal_order", init="spectral_radius")])
def test_model_conflicts_name_every_refused_setting_and_a_value_that_fits(start, model):
    # What the lab's architecture switch applies: every setting the model refuses, each with a value it allows.
    values = vars(start)
    fixes = {name: fit for name, fit, _ in C.model_conflicts(model, values)}
    fixed = start.replace(model=model, **fixes)  # valid: raises otherwise
    kept = {k: v for k, v in values.items() if k not in fixes and k != "model"}
    assert fixed.model == model and all(getattr(fixed, k) == v for k, v in kept.items())
    if fixes:
        with pytest.raises(ConfigError) as e:
            start.replace(model=model)
        assert e.value.field == next(iter(fixes))  # the config refuses the first the same rule names


def test_each_model_family_is_one_record_read_by_the_config_and_the_builder():
    from training.engine import Trainer

    for name, family in R.MODELS.items():
        assert family.recurrent == (name in R.RECURRENT_MODELS)
        if family.recurrent:  # a gate per square block of W_hh: the count the parameter cap uses
            ds = next(d for d in R.DATASETS if d in R.SEQUENCE_DATASETS)
            cfg = Config(model=name, dataset=ds, hidden_size=5, activation=(family.activations or ("tanh",))[0])
            rnn = Trainer(cfg, "cpu").model.rnn
            assert rnn.weight_hh_l0.shape[0] == 5 * len(family.gates)
            assert getattr(rnn, "nonlinearity", "tanh") == R.hidden_activation(cfg)  # lstm, gru: tanh, fixed


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
