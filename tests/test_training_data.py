"""Datasets: a batch is the same rows, whatever the gather used to take them."""

import torch

from training import registry as R
from training.data import TASKS


def test_a_batch_is_the_rows_its_indices_name():
    for name in ("digits", "gaussian"):
        ds = R.DATASETS[name](0)
        x, y = ds.sample(64, torch.Generator().manual_seed(7))
        idx = torch.randint(len(ds.x_train), (64,), generator=torch.Generator().manual_seed(7))
        assert torch.equal(x, ds.x_train[idx]) and torch.equal(y, ds.y_train[idx])


def test_every_dataset_has_its_task_listed():
    assert set(TASKS) == set(R.DATASETS)
