"""The stability map: axis parsing, the classification rule, local/serial/Ray sweeps, cancel, CLI, theory's line."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from training import sweep as SW
from training.cli import main
from training.config import Config
from training.store import Store

SEED_MLP = Config(init="normal")  # the seed's 784-512-256-128-10 ReLU net, N(0, init_std^2) weights
# lr 0.1 at init_std 0.05 learns in 30 steps; lr 1 at the same init goes non-finite by step ~8.
TINY = dict(x="lr=0.1,1", y="init_std=0.01,0.05", steps=30)


def key(results):
    """What must match to the bit; repr so that NaN equals NaN."""
    return sorted(repr((r.x, r.y, r.seed, r.outcome, r.initial_loss, r.final_loss, r.max_grad_norm, r.steps_run,
                        r.signal_ratio)) for r in results)


@pytest.fixture(scope="module")
def local_results():
    return list(SW.Sweep(SEED_MLP, **TINY).run("local", workers=2))


# ---- axes ---------------------------------------------------------------------------------------------------------

def test_log_axis_spans_decades_with_readable_values():
    a = SW.parse_axis("lr=1e-4:1:9")
    assert a.scale == "log" and len(a.values) == 9
    assert a.values[0] == 1e-4 and a.values[-1] == 1.0 and a.values[4] == 0.01
    np.testing.assert_allclose(np.diff(np.log10(a.values)), 0.5, rtol=1e-5)


def test_linear_when_under_a_decade_or_not_positive_and_prefix_forces_it():
    assert SW.parse_axis("init_std=0.5:2:4").scale == "lin"
    assert SW.parse_axis("momentum=0:0.9:4").values == (0.0, 0.3, 0.6, 0.9)
    assert SW.parse_axis("lr=lin:0.1:1:4").values == (0.1, 0.4, 0.7, 1.0)
    assert SW.parse_axis("init_std=log:0.5:2:3").values == (0.5, 1.0, 2.0)


def test_integer_axes_round_and_dedupe_and_lists_sort():
    assert SW.parse_axis("depth=1:3:5").values == (1, 2, 3)
    assert all(type(v) is int for v in SW.parse_axis("batch_size=1:4096:6").values)
    assert SW.parse_axis("lr=1,0.1,0.1").values == (0.1, 1.0)
    assert SW.parse_axis("lr=0.1").values == (0.1,)


@pytest.mark.parametrize("spec, words", [
    ("lr", "expected name=lo:hi:n"), ("foo=1:2:3", "'foo' is not a numeric, true/false or choice config field"),
    ("seed=1:2:2", "not a numeric, true/false or choice config field"), ("device=cpu", "not a numeric"),
    ("norm_position=pre,mid", "norm_position = 'mid' is not one of pre, post"), ("lr=abc", "'abc' is not a number"),
    ("lr=1:2", "three parts"), ("lr=1:0.1:3", "above hi"), ("lr=1e-9:1:3", "out of range; allowed: 1e-06 to 10"),
    ("lr=1:2:0", "n must be a whole number"), ("lr=1:2:2.5", "n must be a whole number"),
    ("lr=log:0:1:3", "log axis needs lo > 0"), ("depth=0:3:3", "out of range"), ("lr=nan:1:3", "not a finite"),
])
def test_bad_axis_raises_naming_it(spec, words):
    with pytest.raises(SW.AxisError) as e:
        SW.parse_axis(spec)
    assert str(e.value).startswith(spec) and words in str(e.value)


def test_a_choice_field_is_an_axis_of_its_names_in_the_fields_order_read_and_handed_to_the_config_by_name():
    ax = SW.parse_axis("norm_position=post,pre")
    assert (ax.values, ax.words, ax.spec) == ((0, 1), ("pre", "post"), "norm_position=pre,post")
    assert [ax.label(v) for v in ax.values] == ["pre", "post"] and ax.value(1) == "post"
    one = SW.parse_axis("activation=tanh")
    assert (one.values, one.words) == ((0,), ("tanh",))
    sweep = SW.Sweep(Config(hidden_sizes=(8,)), "lr=0.1", "activation=relu,tanh", steps=2)
    assert [sweep.config(0.1, v).activation for v in (0, 1)] == ["relu", "tanh"]
    with pytest.raises(SW.AxisError, match="norm_position applies to the transformer"):
        SW.Sweep(Config(), "lr=0.1", "norm_position=pre,post")
    # Every cell is validated first, and a refusal names the cell by its words.
    with pytest.raises(SW.AxisError, match=r"at lr=0.1, model=rnn: .*needs a sequence dataset"):
        SW.Sweep(Config(hidden_sizes=(8,)), "lr=0.1", "model=mlp,rnn", steps=2)


def test_numeric_axes_read_as_numbers_integers_whole():
    lr = SW.parse_axis("lr=1e-4:1:9")
    assert lr.words == () and lr.label(lr.values[1]) == "0.000316228" and lr.label(lr.values[1], 3) == "0.000316"
    batch = SW.parse_axis("batch_size=1:4096:3")
    assert [batch.label(v, 3) for v in batch.values] == ["1", "64", "4096"]  # not 4.1e+03
    assert SW.parse_axis("depth=1:32:2").label(32, 3) == "32"


def test_a_map_saved_before_axes_kept_words_still_reads_its_true_false_axis():
    meta = SW.Sweep(Config(model="transformer", dataset="pycode", d_model=32, context=16, batch_size=4), "lr=0.01",
                    "qk_norm=false,true", steps=2).metadata()
    assert meta["y"]["words"] == ["false", "true"] and meta["y"]["values"] == [0, 1]
    del meta["y"]["words"]
    old = SW.Sweep.from_metadata(meta)
    assert [old.y.label(v) for v in old.y.values] == ["false", "true"] and old.config(0.01, 1).qk_norm is True


def test_no_critical_line_when_an_axis_changes_the_net_it_is_worked_out_for():
    init_std = SW.parse_axis("init_std=0.01:1:5")
    for other in ("activation=relu,tanh", "residual=false,true", "norm=none,layer"):
        assert SW.critical_line(init_std, SW.parse_axis(other), SEED_MLP) is None, other
    assert SW.critical_line(init_std, SW.parse_axis("optimizer=sgd,adam"), SEED_MLP) is not None


def test_axis_that_changes_nothing_is_refused_and_cli_turns_on_what_it_needs():
    with pytest.raises(SW.AxisError, match="init_std only changes the network with --init normal"):
        SW.Sweep(Config(), "lr=0.1,1", "init_std=0.1,1")
    assert SW.implied(Config(), ["lr", "init_std"]) == {"init": "normal"}
    assert SW.implied(Config(), ["init_std"], chosen=["init"]) == {}
    # One table says what each axis needs: the refusal and the implied setting agree, and a base that already
    # clips by value keeps it (value clipping is something a clip_threshold axis changes too).
    assert SW.implied(Config(), ["clip_threshold"]) == {"clip": "norm"}
    assert SW.implied(Config(clip="value"), ["clip_threshold"]) == {}
    SW.Sweep(Config(clip="value", hidden_sizes=(8,)), "lr=0.1,1", "clip_threshold=0.5,1", steps=2)
    with pytest.raises(SW.AxisError, match="clip_threshold only matters with --clip norm or value"):
        SW.Sweep(Config(), "lr=0.1,1", "clip_threshold=0.5,1")


# ---- the rule -----------------------------------------------------------------------------------------------------

RULE = SW.Rule()
ZERO, CONST = math.log(10), 2.30  # all-zero output / best constant, digits-like


@pytest.mark.parametrize("losses, norms, ratio, outcome", [
    ([2.3, 2.0, float("nan")], [1, 2, 3], 1.0, "exploded"),  # non-finite loss
    ([2.3, 2.0, 1.9], [1, 2, float("inf")], 1.0, "exploded"),  # non-finite gradient
    ([2.3, 2.2] + [40.0] * 5, [1] * 7, 1.0, "exploded"),  # diverged: 18x its best and stayed, above a constant's
    ([2.3, 30.0, 0.1] + [1.0] * 5, [1, 50, 1] + [1] * 5, 1.0, "learned"),  # a one-step spike that went away
    ([2.3, 2.2, 2.1] + [1.0] * 5, [1, 50, 1001] + [1] * 5, 1.0, "learned"),  # a growing norm alone is no explosion
    ([6e4, 3e3, 137.0], [8e4, 9e3, 8e3], 1.0, "stuck"),  # blown up at init, falling, still far above a constant's
    ([6e4, 3e3, 137.0, 5.0, 0.5] + [0.4] * 5, [8e4] * 10, 1.0, "learned"),  # blown up at init, recovered
    ([2.3] + [1.0] * 5, [1] * 6, 1.0, "learned"),
    ([2.3] + [1.0] * 5, [1] * 6, 1e-11, "learned"),  # vanishing at init but it learned (the LSTM case)
    ([2.3] + [2.2] * 5, [1] * 6, 1e-4, "vanished"),
    ([2.3] + [2.2] * 5, [1] * 6, 0.5, "stuck"),
    ([2.3] + [2.2] * 5, [1] * 6, float("nan"), "stuck"),  # no backward signal to read
])
def test_rule_on_synthetic_traces(losses, norms, ratio, outcome):
    assert RULE.classify(losses, norms, ratio, ZERO, CONST)[0] == outcome


def test_learned_is_measured_against_the_best_constant_and_the_last_steps():
    # Falling from 5 to 2 halves the initial loss but is no better than guessing the label frequencies.
    assert RULE.classify([5.0, 3.0, 2.0], [1, 1, 1], 1.0, 10.0, 2.3)[0] == "stuck"
    # A run that dips but ends high did not learn: the mean of the last 5 steps counts.
    assert RULE.classify([2.3, 0.5, 0.5, 2.2, 2.2, 2.2, 2.2], [1] * 7, 1.0, ZERO, CONST)[0] == "stuck"


# ---- sweeps -------------------------------------------------------------------------------------------------------

def test_tiny_local_sweep_explodes_in_one_corner_and_learns_in_another(local_results):
    got = {(r.x, r.y): r for r in local_results}
    assert len(got) == 4
    assert got[(1.0, 0.05)].outcome == "exploded" and got[(1.0, 0.05)].steps_run < 30
    assert got[(0.1, 0.05)].outcome == "learned" and got[(0.1, 0.05)].final_loss < 0.5 * got[(0.1, 0.05)].initial_loss
    assert got[(0.1, 0.01)].outcome == "stuck"  # tiny init: the loss stays at ln(10)


def test_same_seeds_same_map_in_another_process(local_results):
    assert key(SW.Sweep(SEED_MLP, **TINY).run("serial")) == key(local_results)


def test_cancel_from_another_thread_stops_the_sweep_early():
    sweep = SW.Sweep(SEED_MLP.replace(hidden_sizes=(32,)), "lr=0.01:0.1:8", "init_std=0.01:0.1:8", steps=200)
    got, t0 = [], time.perf_counter()
    timer = threading.Timer(0.5, sweep.cancel)
    timer.start()
    for r in sweep.run("local", workers=2):
        got.append(r)
    assert sweep.cancelled and len(got) < len(sweep.cells)
    assert time.perf_counter() - t0 < 30


def test_cancel_between_cells_stops_a_serial_sweep():
    sweep = SW.Sweep(SEED_MLP.replace(hidden_sizes=(16,)), "lr=0.01,0.1", "init_std=0.01,0.1", steps=5)
    it = sweep.run("serial")
    first = next(it)
    sweep.cancel()
    assert list(it) == [] and first.steps_run == 5


def test_depth_axis_builds_equal_width_layers_and_a_cell_config_opens_as_a_run():
    sweep = SW.Sweep(SEED_MLP, "init_std=0.05,0.2", "depth=1,4", width=32, steps=10)
    cfg = sweep.config(0.2, 4)
    assert cfg.hidden_sizes == (32,) * 4 and cfg.init_std == 0.2 and cfg.steps == 10
    assert cfg.probe_every == SEED_MLP.probe_every and cfg.device == SEED_MLP.device
    again = SW.Sweep.from_metadata(sweep.metadata())
    assert again.config(0.2, 4) == cfg


def test_outcome_grid_majority_ties_go_to_the_more_severe_and_missing_cells_are_minus_one():
    r = lambda x, y, seed, o: SW.CellResult(x, y, seed, o, "", *[1.0] * 6, 1, 0.0)  # noqa: E731
    results = [r(1, 1, 0, "learned"), r(1, 1, 1, "exploded"), r(1, 1, 2, "exploded"),
               r(2, 1, 0, "learned"), r(2, 1, 1, "stuck")]
    xs, ys, codes, counts = SW.outcome_grid(results, xs=[1, 2], ys=[1, 2])
    assert codes.tolist() == [[SW.OUTCOMES.index("exploded"), SW.OUTCOMES.index("stuck")], [-1, -1]]
    assert counts[0, 0].tolist() == [1, 0, 0, 2] and counts[1].sum() == 0
    assert SW.to_frame(results)["majority"].tolist() == ["exploded"] * 3 + ["stuck"] * 2


def test_store_keeps_sweeps_in_their_own_table_beside_the_runs(tmp_path, local_results):
    meta = SW.Sweep(SEED_MLP, **TINY).metadata("local", complete=True, seconds=1.0)
    sid = SW.save_to_store(local_results, meta, store=tmp_path)
    [entry] = SW.list_stored(tmp_path)
    assert entry["id"] == sid and entry["cells"] == 4 and entry["complete"]
    df, meta2 = SW.load_stored(sid, tmp_path)
    assert meta2 == meta and sorted(df["outcome"]) == sorted(r.outcome for r in local_results)
    assert Store(tmp_path).list_runs() == [] and Store(tmp_path).integrity() == "ok"  # one file, no clash
    assert SW.delete_stored(sid, tmp_path) and SW.list_stored(tmp_path) == []


# ---- CLI ----------------------------------------------------------------------------------------------------------

CLI_COLUMNS = ["seed", "outcome", "reason", "initial_loss", "final_loss", "max_grad_norm",
               "first_grad_norm", "last_grad_norm", "signal_ratio", "steps_run", "seconds", "majority"]


def test_cli_writes_one_row_per_cell_with_the_rule_and_base_config(tmp_path):
    out = tmp_path / "map.parquet"
    rc = main(["sweep", "--x", "lr=0.05,0.5", "--y", "depth=1,2", "--seeds", "2", "--width", "16", "--steps", "8",
               "--backend", "serial", "--quiet", "--out", str(out)])
    assert rc == 0
    table = pq.read_table(out)
    df, meta = table.to_pandas(), SW.load(out)[1]
    assert df.columns.tolist() == ["lr", "depth", *CLI_COLUMNS] and len(df) == 8  # the axes by field name
    assert set(df["outcome"]) <= set(SW.OUTCOMES) and (df["steps_run"] <= 8).all()
    assert meta["x"]["values"] == [0.05, 0.5] and meta["y"]["name"] == "depth" and meta["seeds"] == 2
    assert "exploded:" in meta["rule"]["text"] and meta["rule"]["diverge_factor"] == 10.0
    assert meta["base_config"]["model"] == "mlp" and meta["complete"] is True
    csv = tmp_path / "map.csv"
    assert main(["sweep", "--x", "lr=0.05", "--y", "batch_size=8", "--steps", "2", "--hidden-sizes", "8",
                 "--backend", "serial", "--quiet", "--out", str(csv), "--store", str(tmp_path)]) == 0
    assert SW.load(csv)[0].columns.tolist() == ["lr", "batch_size", *CLI_COLUMNS]
    assert [e["x"] for e in SW.list_stored(tmp_path)] == ["lr=0.05"]


def test_cli_files_and_store_listing_write_true_false_and_choice_axes_in_words(tmp_path):
    tiny = ["--model", "transformer", "--dataset", "pycode", "--d-model", "32", "--context", "16", "--batch-size", "4",
            "--steps", "2", "--backend", "serial", "--quiet"]
    csv, parquet = tmp_path / "m.csv", tmp_path / "m.parquet"
    assert main(["sweep", "--x", "qk_norm=1,0", "--y", "norm_position=post,pre", *tiny, "--out", str(csv),
                 "--store", str(tmp_path)]) == 0
    assert main(["sweep", "--x", "qk_norm=false,true", "--y", "lr=0.01", *tiny, "--out", str(parquet)]) == 0
    rows = [line.split(",")[:2] for line in csv.read_text().splitlines()]
    assert rows == [["qk_norm", "norm_position"],
                    ["false", "pre"], ["true", "pre"], ["false", "post"], ["true", "post"]]
    meta = SW.load(csv)[1]
    assert meta["x"]["values"] == [0, 1] and meta["x"]["words"] == ["false", "true"]  # the coordinates, and words
    assert meta["y"]["words"] == ["pre", "post"]
    assert pq.read_table(parquet).to_pandas()["qk_norm"].tolist() == ["false", "true"]
    [entry] = SW.list_stored(tmp_path)
    assert (entry["x"], entry["y"], entry["label"]) == (
        "qk_norm=false,true", "norm_position=pre,post", "qk_norm=false,true x norm_position=pre,post")


@pytest.mark.parametrize("argv, words", [
    (["--x", "lr=abc", "--y", "init_std=0.1,1"], "--x: lr=abc: value 'abc' is not a number"),
    (["--x", "lr=0.1,1", "--y", "width=1:3:3"], "--y: width=1:3:3: 'width' is not a numeric, true/false or"),
    (["--x", "lr=0.1,1", "--y", "lr=1,2"], "x and y are both lr"),
])
def test_cli_rejects_bad_axes_with_exit_2_and_one_line(tmp_path, capsys, argv, words):
    assert main(["sweep", *argv, "--out", str(tmp_path / "m.parquet")]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and not (tmp_path / "m.parquet").exists()


# ---- Ray ----------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ray_gives_the_same_map_as_the_process_pool(local_results):
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt")
    # "local": a fresh instance even when another Ray cluster runs on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert key(SW.Sweep(SEED_MLP, **TINY).run("ray")) == key(local_results)
    finally:
        ray.shutdown()


# ---- theory's chi = 1 line ----------------------------------------------------------------------------------------

def test_relu_critical_line_is_he_init():
    line = SW.critical_line(SW.parse_axis("init_std=0.01:1:9"), SW.parse_axis("depth=1:32:6"), SEED_MLP, width=128)
    assert line.axis == "x" and line.fan_in == 128
    assert line.value == pytest.approx(math.sqrt(2 / 128), rel=1e-9)
    assert line.xs == (line.value, line.value) and line.ys == (1, 32)
    # Any other axis: straight across it, at the middle layer's fan-in (256 for 784-512-256-128-10).
    other = SW.critical_line(SW.parse_axis("lr=1e-3:1:4"), SW.parse_axis("init_std=0.01:1:9"), SEED_MLP)
    assert other.axis == "y" and other.value == pytest.approx(math.sqrt(2 / 256), rel=1e-9)


def test_linear_critical_line_is_one_over_root_fan_in():
    line = SW.critical_line(SW.parse_axis("init_std=0.01:1:9"), SW.parse_axis("depth=1:8:4"),
                           SEED_MLP.replace(activation="identity"), width=64)
    assert line.value == pytest.approx(1 / 8, rel=1e-9)


@pytest.mark.parametrize("cfg, x", [
    (Config(init="kaiming_normal"), "lr=0.1,1"),  # init_std is not read
    (SEED_MLP, "lr=0.1,1"),  # no init_std axis
    (SEED_MLP.replace(norm="batch"), "init_std=0.1,1"),  # normalisation resets the scale every layer
])
def test_no_critical_line_where_the_theory_does_not_apply(cfg, x):
    assert SW.critical_line(SW.parse_axis(x), SW.parse_axis("depth=1,2"), cfg) is None
