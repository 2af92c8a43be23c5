"""The transformer's charts and its reading in the theory panel, from runs recorded through the engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from components import live_figures as LF
from components import session as S
from components import transformer_charts as TC
from tests.apptest_helpers import live_figures, live_status, poll
from training.config import Config
from training.run import Run
from training.text import VOCAB_SIZE

# The attention-logit lesson's problem, small: Adam at lr 0.03 without qk-layernorm.
GROWS = Config(model="transformer", dataset="pycode", optimizer="adam", lr=0.03, d_model=32, context=32,
               batch_size=8, n_layers=2, n_heads=4, steps=150, probe_every=25)


def recorded(cfg, steps: int) -> Run:
    run = Run(cfg, "cpu")
    for _ in range(steps):
        run.record(run.trainer.step())
    return run


@pytest.fixture(scope="module")
def grows():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return recorded(GROWS, 150).snapshot()
    finally:
        torch.set_num_threads(before)


def test_the_logit_and_entropy_charts_draw_each_layers_column(grows):
    for key, prefix, which in (("chart_attn_logit", TC.LOGIT, "hi"), ("chart_attn_entropy", TC.ENTROPY, "lo")):
        fig = LF.figure(key, [grows])
        for i in range(2):
            line = next(t for t in fig.data if t.name == f"layer {i}")
            steps, values = grows.series(f"{prefix}{i}", which)
            np.testing.assert_array_equal(line.x, steps)
            np.testing.assert_allclose(line.y, values)
    assert LF.figure("chart_attn_logit", [grows]).layout.yaxis.type == "log"


def test_the_entropy_chart_marks_uniform_attention_and_log_z_its_start_and_zero(grows):
    ref = next(t for t in LF.figure("chart_attn_entropy", [grows]).data if t.name.startswith("uniform"))
    assert ref.y[0] == pytest.approx(np.mean([math.log(q + 1) for q in range(32)]))
    fig = LF.figure("chart_log_z", [grows])
    line = next(t for t in fig.data if t.name == "mean log Z")
    np.testing.assert_allclose(line.y, grows.series("logit_log_z")[1])
    refs = {t.name: t.y[0] for t in fig.data if t.line.dash == "dot" and t.name != "spike"}
    assert refs == {f"ln {VOCAB_SIZE} (uniform output)": pytest.approx(math.log(VOCAB_SIZE)), "0 (z-loss target)": 0}


def test_the_heads_chart_draws_the_last_probes_entropy_per_head_and_pattern(grows):
    probe = grows.probes[-1]
    assert probe["step"] == 125
    left, right = LF.figure("chart_attn_heads", [grows]).data
    np.testing.assert_allclose(np.array(left.z), probe["attn_head_entropy"])
    np.testing.assert_allclose(np.array(right.z), probe["attn_pattern"])
    assert f"layer {probe['attn_pattern_layer']}, head {probe['attn_pattern_head']}" in \
        LF.figure("chart_attn_heads", [grows]).layout.xaxis2.title.text


def test_the_reading_says_the_logits_grew_and_the_attention_collapsed(grows):
    logit = grows.series("attn_logit_max/0", "hi")[1]
    words = TC.reading(grows)
    assert logit.max() > 10 * logit[0]  # what the reading is about: this run's logits grew tenfold
    assert "grown more than tenfold" in words and "qk-layernorm" in words
    calm = recorded(GROWS.replace(qk_norm=True, steps=20), 20).snapshot()
    assert "grown more than tenfold" not in TC.reading(calm)


def test_every_transformer_chart_waits_on_a_run_without_its_columns():
    mlp = recorded(Config(hidden_sizes=(16,), batch_size=16, steps=2), 2).snapshot()
    for key in LF.TRANSFORMER_KEYS:
        fig = LF.figure(key, [mlp])
        assert not fig.data and "waiting" in fig.layout.annotations[0].text


def test_the_lab_draws_the_transformer_charts_and_reading_in_place_of_the_mean_field_panel(at):
    at.run()
    at.selectbox(key="w_preset").set_value("attention logits grow").run()
    at.session_state["w_speed"] = S.MAX_SPEED
    at.button(key="btn_start").click().run()
    assert not at.exception and not at.session_state["start_error"]
    poll(at, lambda at: (live_status(at) or {"status": {"runs": [{"step": -1}]}})["status"]["runs"][0]["step"] > 3)
    figures = live_figures(at)
    assert set(LF.TRANSFORMER_KEYS) <= set(figures) and "chart_theory" not in figures
    text = " ".join(m.value for m in at.markdown)
    assert "**Attention logits.**" in text and "**Output log Z**" in text
    assert "Attention and output logits: what could explode" in [e.label for e in at.expander]  # while it trains
    at.button(key="btn_stop").click().run()
