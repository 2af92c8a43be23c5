"""Names shown for a run: the MLP's widths, and what "test accuracy" means on the adding task."""

import pytest

from components import data as D
from components.charts import loss_figure
from components.live_status import run_status
from training import registry as R
from training.config import FIELDS, Config
from training.data import ACCURACY_TOLERANCE, TASKS
from training.runner import Runner

ADDING = Config(model="rnn", dataset="adding", seq_len=5, hidden_size=4, steps=3, device="cpu")


@pytest.mark.parametrize("sizes,shown", [((512, 256, 128), "mlp 512-256-128"), ((256,) * 32, "mlp 32×256"),
                                         ((128, 128, 64), "mlp 2×128-64"), ((7,), "mlp 7")])
def test_an_mlp_is_named_by_its_widths(sizes, shown):
    label = D.describe(Config(hidden_sizes=sizes))
    assert label.startswith(shown + " · ")


def test_the_seed_net_is_not_called_3x512():
    assert "3×512" not in D.describe(Config()) and "512-256-128" in D.describe(Config())


def test_each_dataset_task_matches_its_builder():
    for name, build in R.DATASETS.items():
        assert TASKS[name] == build(5).task, name


@pytest.fixture(scope="module")
def adding_snap():
    r = Runner(ADDING)
    r.start()
    assert r.wait(60)
    return r.snapshot()


def test_the_adding_task_says_within_0_04_wherever_accuracy_is_shown(adding_snap):
    note = f"within {ACCURACY_TOLERANCE:g} of the target"
    assert note == "within 0.04 of the target"
    labels = [m[0] for m in run_status(adding_snap)["metrics"]]
    assert f"Test accuracy ({note})" in labels
    assert note in loss_figure([adding_snap]).layout.yaxis2.title.text
    kind, text = D.end_banner(adding_snap)
    assert f"test accuracy ({note})" in text
    assert note in FIELDS["eval_every"].metadata["help"].replace("the fraction ", "")


def test_a_classification_run_says_test_accuracy_alone():
    assert D.accuracy_label(Config()) == "Test accuracy" and D.accuracy_label(ADDING).endswith("of the target)")
