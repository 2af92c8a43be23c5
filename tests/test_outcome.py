"""The one outcome classifier: its definitions on synthetic traces, then through the engine and the map."""

import json
import math

import pytest

from training import outcome as O
from training import sweep as S
from training.config import Config
from training.engine import Trainer

ZERO = CONST = math.log(10)  # all-zero output / best constant on ten balanced classes


def test_explosion_step_is_the_first_non_finite_step():
    assert O.explosion_step([2.3, 1e5, 1e9, float("nan")], [1, 2, 3, 4]) == 3
    assert O.explosion_step([2.3, 2.0, 1.9], [1, float("inf"), 3]) == 1
    assert O.explosion_step([2.3, 2.0], [1, 2]) is None
    o = O.classify_losses([2.3, 1e5, 1e9, float("nan")], ZERO, CONST)
    assert (o.label, o.explosion_step, o.words) == ("exploded", 3, "exploded at step 3")


def test_a_non_finite_gradient_with_a_finite_loss_is_an_explosion_at_its_step():
    o = O.classify_losses([2.3, 2.1, 2.0], ZERO, CONST, finite=[True, False, True])
    assert o.words == "exploded at step 1"


def test_diverged_means_grew_from_its_best_and_stayed_above_a_constant_guess():
    o = O.classify_losses([2.3, 1.0, 0.5, 0.5, 0.5, 0.5] + [60.0] * 5, ZERO, CONST)
    assert o.label == "exploded" and o.explosion_step is None and o.words == "exploded (diverged)"
    assert "from 0.6 (step 5) to 60" in o.reason  # 5-step means
    # Noisy but below a constant guess: 20x its best, still learned.
    assert O.classify_losses([2.3] + [0.01] * 5 + [0.2] * 5, ZERO, CONST).label == "learned"
    # A spike that went away is no divergence.
    assert O.classify_losses([2.3, 40.0] + [0.5] * 6, ZERO, CONST).label == "learned"


def test_blown_up_at_init_is_not_an_explosion_and_is_named_when_it_recovers():
    o = O.classify_losses([6e4, 3e3, 137.0, 5.0] + [0.3] * 5, ZERO, CONST)
    assert o.label == "learned" and o.note == O.BLOWN_UP_AT_INIT
    assert o.words == "learned (blown up at init, recovered)"
    stuck = O.classify_losses([6.3e4, 3e4, 2e4, 1.6e4, 1.6e4, 1.6e4], ZERO, CONST)
    assert stuck.label == "stuck" and stuck.note is None and "step-0 loss 6.3e+04" in stuck.reason


def test_learned_vanished_stuck():
    assert O.classify_losses([2.3] + [1.0] * 5, ZERO, CONST).label == "learned"
    assert O.classify_losses([2.3] + [2.29] * 5, ZERO, CONST, signal_ratio=1e-5).label == "vanished"
    assert O.classify_losses([2.3] + [2.29] * 5, ZERO, CONST, signal_ratio=0.5).label == "stuck"
    assert O.classify_losses([], ZERO, CONST).label == "stuck"


def test_a_language_model_learned_when_well_below_the_unigram_entropy_not_when_it_halved_its_loss():
    ln_vocab, unigram = math.log(97), 3.14  # pycode: an all-zero output, and the character frequencies alone
    bigrams = [ln_vocab] + [2.5] * 5  # 0.8x the unigram entropy: learned, though far from half of it
    assert O.classify_losses(bigrams, ln_vocab, unigram).label == "stuck"  # the general rule asks for 0.5x
    assert O.classify_losses(bigrams, ln_vocab, unigram, language_model=True).label == "learned"
    frequencies = [ln_vocab] + [unigram] * 5
    assert O.classify_losses(frequencies, ln_vocab, unigram, language_model=True).label == "stuck"
    edge = O.RULE.lm_learn_fraction * unigram
    assert O.classify_losses([ln_vocab] + [edge * 1.01] * 5, ln_vocab, unigram, language_model=True).label == "stuck"
    assert "language model" in O.RULE.text()


def test_the_engine_records_the_outcome_event_at_the_last_step_and_it_round_trips():
    t = Trainer(Config(hidden_sizes=(32,), batch_size=32, steps=40, lr=0.1, probe_every=1000), "cpu")
    recs = [t.step() for _ in range(40)]
    assert all(O.of_events(r.events) is None for r in recs[:-1])
    got = O.of_events(recs[-1].events)
    assert got == t.outcome()
    assert got == O.classify_losses([r.loss for r in recs], *t.references, signal_ratio=t._signal_ratio)
    assert got.label == "learned"


def test_sweep_rule_is_the_same_classifier():
    losses = [2.3, 2.2] + [40.0] * 5
    assert S.Rule().classify(losses, [1] * 7, 1.0, ZERO, CONST) == (
        "exploded", O.classify_losses(losses, ZERO, CONST).reason)
    assert S.OUTCOMES == O.OUTCOMES


def test_sigmoid_net_that_does_not_learn_is_not_called_a_success():
    """A deep sigmoid net at N(0, 0.05) keeps its loss at ln 10 (chance accuracy): stuck or vanished, never learned."""
    cfg = Config(hidden_sizes=(128,) * 6, activation="sigmoid", init="normal", init_std=0.05, lr=0.01, steps=60,
                 probe_every=1000)
    t = Trainer(cfg, "cpu")
    for _ in range(cfg.steps):
        rec = t.step()
    o = O.of_events(rec.events)
    assert o.label in ("stuck", "vanished"), o
    _, acc = t.evaluate()
    assert acc < 0.2


MAP = S.Sweep(Config(init="normal"), "lr=1e-4:1:5", "init_std=0.01:2:5", seeds=1)


@pytest.mark.parametrize("lr", [1e-3, 1e-2])
def test_map_cells_blown_up_at_init_that_learn_are_not_exploded(lr):
    """The map of `sweep --x lr=1e-4:1:5 --y init_std=0.01:2:5`: at std 0.1414 the step-0 loss is ~25 (11x an
    all-zero output's), then the net learns; these cells were marked exploded by a loss threshold."""
    std = MAP.y.values[2]
    assert std == pytest.approx(0.1414, rel=1e-3)
    cell = S.Cell(lr, std, 0)
    r = S.run_cell(cell, MAP._build(cell), MAP.rule)
    assert r.initial_loss > 10 * math.log(10)
    assert r.outcome == "learned" and "step-0 loss" in r.reason, r


# ---- one name for one outcome, on every view -------------------------------------------------------------------

SEED_N01 = Config(init="normal", init_std=1.0, lr=0.01, seed=0, probe_every=1000, steps=30)  # non-finite at step 5


def test_banner_status_saved_runs_cli_and_map_name_the_seed_net_explosion_alike(tmp_path, capsys):
    from components import data as D
    from components import page_saved as PS
    from components.live_status import run_status
    from training import cli
    from training.manager import RunManager
    from training.store import Store

    store = Store(tmp_path / "data")
    manager = RunManager(max_running=1, store=store, idle_pause_s=0)
    try:
        runner = manager.start(SEED_N01)
        assert runner.wait(120) and store.flush()
        snap = runner.snapshot()
        kind, banner = D.end_banner(snap)
        assert kind == "error" and "exploded at step 5**" in banner and "(step 4)" in banner
        line = run_status(snap)
        assert line["label"] == "exploded at step 5" and line["step_text"] == "5" and line["state"] == "exploded"
        runs = PS.with_outcomes({r["id"]: r for r in store.list_runs()}, store.outcomes())
        assert PS.runs_frame(list(runs.values()))["outcome"].tolist() == ["exploded at step 5"]
        assert PS._label(runs[snap.id]).endswith("· exploded at step 5")
        rows = store.load_run(snap.id)
        losses = rows.rows[:, rows.columns.index("loss")]
        norms = rows.rows[:, rows.columns.index("grad_norm_pre_clip")]
        assert S.Rule().classify(losses, norms, 1.0, ZERO, CONST)[1].startswith("step 5 went non-finite")  # map
    finally:
        assert manager.shutdown()
        store.close()
    out = tmp_path / "run.csv"
    argv = ["run", "--init", "normal", "--init-std", "1", "--lr", "0.01", "--seed", "0", "--steps", "30",
            "--quiet", "--out", str(out)]
    assert cli.main(argv) == 0
    assert capsys.readouterr().err.startswith("exploded at step 5: 6 steps recorded")
    side = json.loads(out.with_name(out.name + ".events.json").read_text())
    explosion = next(e for e in side["events"] if e["kind"] == "explosion")
    recorded = next(e for e in side["events"] if e["kind"] == "outcome")
    assert explosion["step"] == recorded["explosion_step"] == 5


def test_finished_runs_are_named_by_their_outcome_not_a_green_finished():
    from components import data as D
    from training.runner import Runner

    cfg = Config(hidden_sizes=(128,) * 6, activation="sigmoid", init="normal", init_std=0.05, steps=40,
                 probe_every=20)
    runner = Runner(cfg)
    runner.start()
    assert runner.wait(120)
    kind, banner = D.end_banner(runner.snapshot())
    assert kind == "warning" and ("stuck**" in banner or "vanished**" in banner), banner
    assert "without exploding" not in banner
    from components.live_status import run_status

    line = run_status(runner.snapshot())
    assert line["label"] in ("stuck", "vanished") and line["badge"] == "orange" and line["state"] == "finished"
