"""A transformer run through the store, the CLI export, the Saved runs page and an A/B pair: its attention and log Z
columns are saved, read back and exported with the same numbers the engine recorded."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

import training.manager as M
from components import page_saved as P
from training import transformer as TF
from training.cli import main
from training.config import Config, from_dict
from training.engine import Trainer
from training.store import Store

SMALL = Config(model="transformer", dataset="pycode", d_model=32, n_heads=4, context=16, batch_size=4, n_layers=2,
               optimizer="adam", lr=0.01, steps=8)
MEASURES = TF.columns(2)  # attn_logit_max/0, /1, attn_entropy/0, /1, logit_log_z
FLAGS = ["--model", "transformer", "--dataset", "pycode", "--d-model", "32", "--n-heads", "4", "--context", "16",
         "--batch-size", "4", "--n-layers", "2", "--optimizer", "adam", "--lr", "0.01", "--steps", "8", "--quiet"]


def engine_rows(cfg: Config) -> tuple[list[str], np.ndarray]:
    t = Trainer(cfg.replace(probe_every=cfg.steps + 1), "cpu")  # the CLI's store run keeps no activation probes
    return t.columns, np.array([t.step().row() for _ in range(cfg.steps)])


def test_a_cli_run_saved_in_the_store_reads_back_and_exports_its_measure_columns(tmp_path):
    out = tmp_path / "t.csv"
    assert main(["run", *FLAGS, "--store", str(tmp_path / "data"), "--out", str(out)]) == 0
    store = Store(tmp_path / "data")
    (info,) = store.list_runs()
    run = store.load_run(info["id"])
    columns, rows = engine_rows(SMALL)
    assert run.columns == columns and set(MEASURES) <= set(run.columns)
    idx = [columns.index(c) for c in MEASURES]
    np.testing.assert_allclose(run.rows[:, idx], rows[:, idx], rtol=1e-6)  # the numbers the engine recorded
    table = pd.read_csv(out)
    assert list(table.columns) == ["step", *columns] and len(table) == 8
    np.testing.assert_allclose(table[MEASURES].to_numpy(), rows[:, idx], rtol=1e-6)
    # A run read back from the store is the config it was trained with.
    assert from_dict(run.config) == SMALL




def _saved_page():
    from components import page_saved

    page_saved.render()


def test_an_ab_pair_of_transformers_is_saved_listed_and_exported_by_the_saved_runs_page(data_dir):
    manager = M.get_manager()
    runner = manager.start([SMALL, SMALL.replace(qk_norm=True)], labels=["A", "B"])  # Compare A/B: one runner
    assert runner.wait(60) and manager.store.flush()
    store = manager.store
    ids = [r.id for r in runner.runs]
    for rid, qk in zip(ids, (False, True), strict=True):
        run = store.load_run(rid)
        assert from_dict(run.config).qk_norm is qk and set(MEASURES) <= set(run.columns) and len(run.steps) == 8
        assert np.isfinite(run.rows[:, [run.columns.index(c) for c in MEASURES]]).all()
    csv = pd.read_csv(io.BytesIO(P.export_bytes(store, ids[0], "csv")))
    assert set(MEASURES) <= set(csv.columns)
    at = AppTest.from_function(_saved_page, default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    assert set(at.dataframe[0].value["run"]) == set(ids)
    assert set(at.dataframe[0].value["model"]) == {"transformer"}

