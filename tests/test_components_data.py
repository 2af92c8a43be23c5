"""The export table and the one-line cure (components/data.py), on plain data."""

from __future__ import annotations

import numpy as np

from components import data as D
from tests.test_charts import make_snapshot
from training.config import Config, from_preset


def test_suggestion_depends_on_the_config():
    assert D.suggestion(from_preset("RNN on long sequences explodes")).startswith("clip by norm, or use an LSTM")
    explode = D.suggestion(from_preset("watch it explode"))
    assert "turn on clipping" in explode and "He init (kaiming_normal)" in explode
    assert "lower the learning rate" in D.suggestion(Config(clip="norm", lr=1.0))


def test_export_table_has_step_and_every_column_and_keeps_inf():
    snap = make_snapshot({"loss": [2.0, np.inf]}, steps=[0, 1])
    df = D.run_table(snap)
    # The export schema: step, the scalars, the test columns (NaN: not in this snapshot), then every parameter.
    assert list(df.columns) == ["step", *snap.columns[:5], "test_loss", "test_accuracy", *snap.columns[5:]]
    assert len(df) == 2 and df["test_loss"].isna().all() and df["clipped"].dtype == bool
    assert "inf" in D.table_csv(snap).decode().splitlines()[2]
    assert D.full_resolution_start(snap) is None
    assert D.full_resolution_start(make_snapshot({"loss": [1.0] * 4}, steps=[3, 7, 8, 9])) == 8
