"""Batched folding builds exactly the buckets that folding one row at a time builds.

``RowByRow`` is the per-row algorithm History used before folding was batched, kept here as the reference.
Its only change is when it folds: like History, it waits for a full ring and then folds the oldest ``chunk``
rows, one at a time. So at every moment both have folded the same rows, and their views must be identical.
"""

import numpy as np
import pytest

from training.history import CHUNK, History


class RowByRow:
    def __init__(self, ncol: int, recent: int, buckets: int, chunk: int):
        self._recent_cap, self._chunk = recent, min(chunk, recent)
        self._steps = np.zeros(recent, dtype=np.int64)
        self._rows = np.zeros((recent, ncol))
        self._start = self._len = 0
        self._bucket_cap, self._width = buckets, 1
        self._b_first = np.zeros(buckets, dtype=np.int64)
        self._b_last = np.zeros(buckets, dtype=np.int64)
        self._b_min, self._b_max, self._b_val = (np.zeros((buckets, ncol)) for _ in range(3))
        self._b_count = np.zeros(buckets, dtype=np.int64)
        self._nb = 0
        self.total = 0

    def append(self, step: int, row: np.ndarray) -> None:
        if self._len == self._recent_cap:
            for _ in range(self._chunk):
                self._fold_oldest()
        i = (self._start + self._len) % self._recent_cap
        self._steps[i] = step
        self._rows[i] = row
        self._len += 1
        self.total += 1

    def _fold_oldest(self) -> None:
        i = self._start
        step, row = self._steps[i], self._rows[i]
        self._start = (self._start + 1) % self._recent_cap
        self._len -= 1
        b = self._nb - 1
        if b >= 0 and self._b_count[b] < self._width:
            self._b_min[b] = np.fmin(self._b_min[b], row)
            self._b_max[b] = np.fmax(self._b_max[b], row)
            self._b_val[b] = row
            self._b_last[b] = step
            self._b_count[b] += 1
            return
        if self._nb == self._bucket_cap:
            self._merge_pairs()
        b = self._nb
        self._b_first[b] = self._b_last[b] = step
        self._b_min[b] = self._b_max[b] = self._b_val[b] = row
        self._b_count[b] = 1
        self._nb += 1

    def _merge_pairs(self) -> None:
        h = self._nb // 2
        even, odd = slice(0, 2 * h, 2), slice(1, 2 * h, 2)
        self._b_min[:h] = np.fmin(self._b_min[even], self._b_min[odd])
        self._b_max[:h] = np.fmax(self._b_max[even], self._b_max[odd])
        self._b_val[:h] = self._b_val[odd]
        self._b_first[:h] = self._b_first[even]
        self._b_last[:h] = self._b_last[odd]
        self._b_count[:h] = self._b_count[even] + self._b_count[odd]
        self._nb = h
        self._width *= 2

    def recent(self) -> tuple[np.ndarray, np.ndarray]:
        idx = (self._start + np.arange(self._len)) % self._recent_cap
        return self._steps[idx].copy(), self._rows[idx].copy()

    def view(self) -> dict[str, np.ndarray]:
        steps, rows = self.recent()
        nb = self._nb
        return {
            "step": np.concatenate([self._b_last[:nb], steps]),
            "value": np.concatenate([self._b_val[:nb], rows]),
            "lo": np.concatenate([self._b_min[:nb], rows]),
            "hi": np.concatenate([self._b_max[:nb], rows]),
        }


def stream(n: int, ncol: int, seed: int) -> tuple[np.ndarray, int]:
    """Columns 0 and 1 with scattered NaN/inf/-inf (1 also with a long all-NaN stretch), 2 always NaN, the last
    finite but for one planted spike; returns (rows, the spike's row)."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(1.0, 0.5, size=(n, ncol))
    u = rng.random((n, 2))
    noisy = rows[:, :2]
    noisy[u < 0.03] = np.nan
    noisy[(u >= 0.03) & (u < 0.04)] = np.inf
    noisy[(u >= 0.04) & (u < 0.05)] = -np.inf
    rows[n // 3:n // 3 + n // 5, 1] = np.nan  # wide enough for whole buckets of NaN only
    rows[:, 2] = np.nan
    spike = int(rng.integers(0, n // 2))
    rows[spike, -1] = 1e12
    return rows, spike


def assert_same(h: History, ref: RowByRow) -> None:
    v, r = h.view(), ref.view()
    for key in ("step", "value", "lo", "hi"):
        np.testing.assert_array_equal(v[key], r[key], err_msg=key)
    nb = ref._nb
    assert (h._nb, h._width, h.total) == (nb, ref._width, ref.total)
    np.testing.assert_array_equal(h._b_first[:nb], ref._b_first[:nb])
    np.testing.assert_array_equal(h._b_count[:nb], ref._b_count[:nb])


SIZES = [  # recent, buckets, chunk
    (8, 8, 1), (8, 8, 2), (8, 8, 3), (8, 8, 8), (8, 8, CHUNK),  # CHUNK > recent: the whole ring folds
    (16, 4, 1), (16, 4, 5), (16, 4, 7), (16, 4, 16),
    (12, 6, 5),  # 12 is no multiple of 5: the chunk wraps around the ring
    (4, 16, 3), (5, 2, 2), (64, 32, 24), (300, 8, CHUNK),
]


@pytest.mark.parametrize("recent,buckets,chunk", SIZES)
def test_batched_fold_matches_row_by_row(recent, buckets, chunk):
    n, ncol = 12_000, 4
    rows, spike = stream(n, ncol, seed=recent * 1000 + buckets * 10 + chunk)
    h = History([f"c{i}" for i in range(ncol)], recent, buckets, chunk=chunk)
    ref = RowByRow(ncol, recent, buckets, chunk)
    size, checks = h.nbytes(), 0
    for s in range(n):
        h.append(s, rows[s])
        ref.append(s, rows[s])
        if s < 600 or s % 97 == 0 or s == n - 1:  # every step early on (first folds, merges), then spread out
            assert_same(h, ref)
            assert h.last()[0] == s
            steps, _ = ref.recent()
            np.testing.assert_array_equal(h.rows_since(s - 3)[0], steps[steps > s - 3])
            checks += 1
    assert checks > 700 and h._width >= 256  # many merges happened
    assert h.nbytes() == size  # constant memory
    v = h.view()
    i = int(np.searchsorted(v["step"], spike))  # the bucket covering the spike (drawn at its last step)
    assert v["hi"][i, -1] == 1e12 == v["hi"][:, -1].max() and v["step"][i] > spike
    assert np.isnan(h.view()["hi"][:, 2]).all()  # a column of NaN only stays NaN


@pytest.mark.parametrize("buckets", [0, 1, 3, 2047])
def test_an_odd_bucket_count_is_refused(buckets):
    with pytest.raises(ValueError, match="buckets must be an even number"):
        History(["a"], buckets=buckets)


def test_recent_window_length_once_full():
    h = History(["a"], recent=16, buckets=4, chunk=5)
    lengths = set()
    for s in range(500):
        h.append(s, np.array([float(s)]))
        if s >= 16:
            lengths.add(len(h.recent()[0]))
    assert lengths == set(range(16 - 5 + 1, 17))


def test_default_chunk_and_bad_chunk():
    assert History(["a"])._chunk == CHUNK
    with pytest.raises(ValueError):
        History(["a"], chunk=0)
