"""Learning-rate sensitivity (training/lr_sensitivity.py), the true/false map axis it sweeps, and its claim: on a
small character transformer, qk-layernorm lowers the LR sensitivity (Wortsman et al. 2023), measured by a map."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest

from components.lr_chart import lr_sensitivity_figure
from tests.apptest_helpers import poll, values
from tests.test_map_page import launch_serial, map_at  # noqa: F401 (a fixture)
from training import lr_sensitivity as LRS
from training import sweep as SW
from training.cli import main
from training.config import Config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A small net and a short run, so the whole map trains in ~30 s on one core: 6 lrs x qk-layernorm off and on.
LM = Config(model="transformer", dataset="pycode", optimizer="adam", d_model=32, context=32, batch_size=16,
            n_layers=2, n_heads=4)
GRID = "lr=1e-3:0.3:6"




def cell(x, y, seed, initial, final):
    return {"x": x, "y": y, "seed": seed, "initial_loss": initial, "final_loss": final}


def test_sensitivity_is_the_mean_of_the_capped_losses_minus_the_best_seeds_averaged_first():
    cells = [cell(0.01, 0, 0, 4.6, 2.4), cell(0.01, 0, 1, 4.6, 2.6),  # mean 2.5
             cell(0.1, 0, 0, 4.6, 3.0), cell(0.1, 0, 1, 4.6, 9.0),  # 9.0 capped at the loss at init: 3.8
             cell(1.0, 0, 0, 4.6, math.nan), cell(1.0, 0, 1, 4.6, math.inf),  # non-finite: the loss at init
             cell(0.01, 1, 0, 4.5, 2.0), cell(1.0, 1, 0, 4.5, 2.2)]
    off, on = LRS.curves(cells, "x")
    assert off.group == 0 and off.lrs == (0.01, 0.1, 1.0)
    np.testing.assert_allclose(off.losses, [2.5, 3.8, 4.6])
    assert off.sensitivity == pytest.approx(np.mean([2.5, 3.8, 4.6]) - 2.5) and off.best_lr == 0.01
    assert on.sensitivity == pytest.approx(0.1) and on.lrs == (0.01, 1.0)
    # The lr on the y axis reads the same cells transposed.
    flipped = [{**c, "x": c["y"], "y": c["x"]} for c in cells]
    assert [c.sensitivity for c in LRS.curves(flipped, "y")] == [off.sensitivity, on.sensitivity]
    qk = SW.parse_axis("qk_norm=false,true")  # the other axis says how its values read
    assert LRS.summary([off, on], qk).startswith("LR sensitivity: qk_norm=false 1.13 (best lr 0.01), qk_norm=true 0.1")


def test_a_true_false_field_is_an_axis_of_zero_and_one_read_as_false_and_true_and_handed_to_the_config_as_a_bool():
    ax = SW.parse_axis("qk_norm=false,true")
    assert ax.values == (0, 1) and SW.parse_axis("qk_norm=1").values == (1,)
    assert [ax.label(v) for v in ax.values] == ["false", "true"] and SW.parse_axis("qk_norm=1").label(1) == "true"
    assert SW.parse_axis("qk_norm=1,0").spec == "qk_norm=false,true"  # as saved maps are listed
    with pytest.raises(SW.AxisError, match="qk_norm takes false, true or both"):
        SW.parse_axis("qk_norm=maybe")
    with pytest.raises(SW.AxisError, match="qk_norm applies to the transformer"):
        SW.Sweep(Config(), "lr=0.01,0.1", "qk_norm=false,true")
    sweep = SW.Sweep(LM, "lr=0.01", "qk_norm=false,true", steps=3)
    assert [sweep.config(0.01, q).qk_norm for q in (0, 1)] == [False, True]


@functools.cache
def lr_map() -> tuple[list[SW.CellResult], list[LRS.Curve]]:
    sweep = SW.Sweep(LM, GRID, "qk_norm=false,true", seeds=1, steps=300)
    cells = list(sweep.run("serial"))
    return cells, LRS.curves(cells, "x")


def test_qk_layernorm_lowers_the_learning_rate_sensitivity_of_a_small_character_transformer():
    cells, (off, on) = lr_map()
    assert (off.group, on.group) == (0, 1)
    assert on.sensitivity < 0.75 * off.sensitivity  # measured: 0.30 without, 0.17 with
    assert abs(on.best_lr - off.best_lr) / off.best_lr < 0.01  # the same best lr: the gain is away from it
    # The high-lr end is where they part: without qk-layernorm the loss is back near a constant guess's.
    assert off.losses[-2] > on.losses[-2] + 0.2
    # The map says which cells learned (the language-model rule), not "stuck" everywhere.
    outcomes = {c.outcome for c in cells}
    assert "learned" in outcomes and outcomes <= {"learned", "stuck", "exploded"}


def test_a_sweep_over_lr_prints_each_lines_sensitivity(tmp_path, capsys):
    args = ["sweep", "--x", "lr=0.001,0.01", "--y", "qk_norm=false,true", "--model", "transformer", "--dataset",
            "pycode", "--optimizer", "adam", "--d-model", "32", "--context", "16", "--batch-size", "4", "--steps", "4",
            "--backend", "serial", "--quiet", "--out", str(tmp_path / "m.csv")]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "LR sensitivity: qk_norm=false " in err and ", qk_norm=true " in err and "qk_norm=0" not in err


def test_the_chart_draws_one_line_per_value_of_the_other_axis_named_with_its_sensitivity():
    curves = LRS.curves([cell(0.01, 0, 0, 4.6, 2.4), cell(0.1, 0, 0, 4.6, 3.0), cell(0.01, 1, 0, 4.6, 2.5)])
    fig = lr_sensitivity_figure(curves, SW.parse_axis("qk_norm=false,true"))
    assert [t.name for t in fig.data] == ["qk_norm = false: LR sensitivity 0.3", "qk_norm = true: LR sensitivity 0"]
    assert list(fig.data[0].x) == [0.01, 0.1] and list(fig.data[0].y) == [2.4, 3.0]
    assert fig.layout.xaxis.type == "log"


def test_a_finished_map_with_an_lr_axis_draws_the_loss_against_lr_under_it(map_at):  # noqa: F811 (the fixture)
    job = launch_serial(map_at, "lr=1e-3,0.1", "init_std=0.01,1", 20)
    poll(map_at, lambda at: not job.alive and job.saved is not None)
    map_at.run()
    assert not map_at.exception
    spec = next(json.loads(c.proto.spec) for c in map_at.get("plotly_chart")
                if json.loads(c.proto.spec)["layout"]["title"]["text"] == "Final loss against learning rate")
    curves = LRS.curves(job.snapshot(), "x")
    assert [t["name"] for t in spec["data"]] == [f"init_std = {c.group:g}: LR sensitivity {c.sensitivity:.3g}"
                                                 for c in curves]
    np.testing.assert_allclose(values(spec["data"][0]["y"]), curves[0].losses)
