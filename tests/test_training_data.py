"""Datasets (training/data.py): what each one holds, its batches' shapes, the same batches from the same seed, and a
batch is the same rows, whatever the gather used to take them."""

import pytest
import torch

from training import data
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


def test_digits_are_scikit_learns_8x8_images_upsampled_bilinearly_to_28x28_and_standardised():
    """Rebuilt here from scikit-learn and torch directly: every image is in the set once, train or test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).reshape(-1, 784)
    x = (x - x.mean()) / x.std()
    ds = data.digits()
    assert (ds.input_dim, ds.output_dim, ds.task, ds.sequential) == (784, 10, "classification", False)
    assert ds.x_train.shape == (1437, 784) and ds.x_test.shape == (360, 784)  # 20% held out
    got = torch.cat([ds.x_test, ds.x_train])
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(data.DATA_SEED))
    torch.testing.assert_close(got, x[perm], rtol=0, atol=0)
    assert torch.equal(torch.cat([ds.y_test, ds.y_train]), torch.tensor(d.target)[perm])


def test_the_data_never_depends_on_the_training_seed_and_a_build_is_a_fresh_copy():
    for name in R.DATASETS:
        a, b = R.DATASETS[name](10), R.DATASETS[name](10)
        assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_test, b.y_test), name
    first = data.digits()
    first.x_train.zero_()  # a run that moved or changed its copy leaves the next run's alone
    assert data.digits().x_train.abs().sum() > 0


@pytest.mark.parametrize("name", list(R.DATASETS))
def test_a_seeded_generator_gives_the_same_batches_and_another_seed_others(name):
    ds = R.DATASETS[name](12)
    x1, y1 = ds.sample(16, torch.Generator().manual_seed(5))
    x2, y2 = ds.sample(16, torch.Generator().manual_seed(5))
    x3, _ = ds.sample(16, torch.Generator().manual_seed(6))
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)


@pytest.mark.parametrize(("name", "x_shape", "y_shape", "y_dtype"), [
    ("digits", (16, 784), (16,), torch.long),
    ("gaussian", (16, 784), (16,), torch.long),
    ("adding", (16, 12, 2), (16, 1), torch.float32),
    ("temporal_order", (16, 12, 6), (16,), torch.long),
])
def test_sample_shapes(name, x_shape, y_shape, y_dtype):
    ds = R.DATASETS[name](12)
    x, y = ds.sample(16, torch.Generator().manual_seed(0))
    assert x.shape == x_shape and y.shape == y_shape and y.dtype == y_dtype
    assert ds.x_test.shape[1:] == x_shape[1:] and ds.sequential == (len(x_shape) == 3)
    assert x.shape[-1] == ds.input_dim


def test_the_adding_target_is_the_sum_of_the_two_marked_values():
    x, y = data.adding(20).sample(64, torch.Generator().manual_seed(0))
    values, markers = x[..., 0], x[..., 1]
    assert torch.equal(markers.sum(1), torch.full((64,), 2.0))
    assert (markers[:, :10].sum(1) == 1).all()  # one marker in each half
    torch.testing.assert_close(y[:, 0], (values * markers).sum(1))


def test_the_temporal_order_class_is_the_order_of_its_two_symbols():
    x, y = data.temporal_order(30).sample(64, torch.Generator().manual_seed(0))
    sym = x.argmax(-1)
    for row, cls in zip(sym, y, strict=True):
        relevant = row[row >= 4] - 4  # X = 0, Y = 1, in order
        assert len(relevant) == 2 and cls.item() == relevant[0].item() * 2 + relevant[1].item()


def test_accuracy_counts_a_regression_output_within_the_tolerance():
    y = torch.tensor([[1.0], [1.0], [1.0]])
    out = y + torch.tensor([[0.0], [data.ACCURACY_TOLERANCE / 2], [data.ACCURACY_TOLERANCE * 2]])
    assert data.accuracy("regression", out, y) == pytest.approx(2 / 3)
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    assert data.accuracy("classification", logits, torch.tensor([0, 0])) == 0.5
