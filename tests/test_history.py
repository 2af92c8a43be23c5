import numpy as np

from training.history import History


def test_recent_rows_are_exact_and_ordered():
    h = History(["a", "b"], recent=8, buckets=4)
    for s in range(5):
        h.append(s, np.array([s, -s], dtype=float))
    steps, rows = h.recent()
    assert steps.tolist() == [0, 1, 2, 3, 4] and rows[:, 1].tolist() == [0, -1, -2, -3, -4]
    assert h.last()[0] == 4
    assert h.rows_since(2)[0].tolist() == [3, 4]


def test_rows_since_a_step_are_the_recent_rows_after_it_or_none_once_some_have_folded():
    h = History(["a"], recent=8, buckets=4, chunk=3)  # 8 is not a multiple of 3: the ring wraps mid-chunk
    for s in range(23):
        h.append(s, np.array([s * 1.5]))
        steps, _ = h.recent()
        for after in range(-1, s + 1):
            got = h.since(after)
            if after + 1 < steps[0]:  # a row after ``after`` is in a bucket now
                assert got is None, (s, after)
            else:
                assert got[0].tolist() == list(range(after + 1, s + 1)), (s, after)
                assert got[1][:, 0].tolist() == [x * 1.5 for x in range(after + 1, s + 1)]


def test_memory_is_bounded_and_a_single_spike_survives():
    rng = np.random.default_rng(0)
    h = History(["loss", "norm"], recent=64, buckets=32)
    size = h.nbytes()
    n, spike_at, dip_at = 50_000, int(rng.integers(100, 40_000)), 45_000
    for s in range(n):
        v = 1.0 + 0.01 * rng.random()
        h.append(s, np.array([v, 1e6 if s == spike_at else v if s != dip_at else 1e-9]))
    assert h.nbytes() == size  # constant memory, however long the run
    view = h.view()
    assert len(view["step"]) <= 64 + 32
    assert view["hi"][:, 1].max() == 1e6  # the spike is kept as a bucket max, not averaged away
    assert view["lo"][:, 1].min() == 1e-9
    # The spike sits in the bucket covering its step.
    i = int(np.argmax(view["hi"][:, 1]))
    assert view["step"][i] >= spike_at and (i == 0 or view["step"][i - 1] < spike_at)
    assert view["step"][-1] == n - 1 and np.all(np.diff(view["step"]) > 0)
    assert h.total == n


def test_non_finite_values_are_kept_not_dropped():
    h = History(["loss"], recent=4, buckets=4)
    for s in range(20):
        h.append(s, np.array([float(s)]))
    h.append(20, np.array([np.inf]))
    h.append(21, np.array([np.nan]))
    v = h.view()
    assert np.isinf(v["value"][-2, 0]) and np.isnan(v["value"][-1, 0])
    # Folding NaN into a bucket keeps the bucket's finite extremes (fmin/fmax).
    for s in range(22, 30):
        h.append(s, np.array([1.0]))
    v = h.view()
    assert np.isfinite(v["lo"][:, 0]).any() and np.isinf(v["hi"][:, 0]).any()
