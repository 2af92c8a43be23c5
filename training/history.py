"""Bounded metric history: recent steps at full resolution, older ones decimated.

Memory stays constant however long the run. Older rows fold into buckets that keep the min, the max
and the last value of every column (never a mean), so a single-step spike survives any amount of
decimation. When the buckets fill up, neighbours merge pairwise and the bucket width doubles.

Folding is batched: ``append`` runs on the training step's hot path, where each small numpy call costs
microseconds once forward/backward have evicted the caches, so it only writes the row into a ring. When the
ring is full, its oldest ``chunk`` rows fold at once with a few vectorised reductions. The buckets are exactly
those that folding one row at a time would build; only the recent window's length now varies, between
``recent - chunk + 1`` and ``recent`` rows once the run is longer than ``recent``.
"""

from __future__ import annotations

import numpy as np

CHUNK = 256  # rows folded at once: ~10 numpy calls per chunk instead of per row


class History:
    def __init__(self, columns: list[str], recent: int = 2048, buckets: int = 2048, chunk: int = CHUNK):
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        if buckets < 2 or buckets % 2:  # merging pairs of an odd count would drop the last bucket's rows
            raise ValueError(f"buckets must be an even number of at least 2, got {buckets}")
        self.columns = list(columns)
        self.col = {c: i for i, c in enumerate(self.columns)}
        n = len(self.columns)
        self._recent_cap = recent
        self._chunk = min(chunk, recent)  # a chunk larger than the ring folds it whole
        self._steps = np.zeros(recent, dtype=np.int64)
        self._rows = np.zeros((recent, n), dtype=np.float64)
        self._start = 0  # ring buffer of recent rows
        self._len = 0
        self._bucket_cap = buckets
        self._width = 1  # rows per bucket (doubles as buckets merge)
        self._b_first = np.zeros(buckets, dtype=np.int64)  # first and last step in the bucket
        self._b_last = np.zeros(buckets, dtype=np.int64)
        self._b_min = np.zeros((buckets, n))
        self._b_max = np.zeros((buckets, n))
        self._b_val = np.zeros((buckets, n))  # last value
        self._b_count = np.zeros(buckets, dtype=np.int64)  # rows folded into the bucket
        self._nb = 0
        self.total = 0  # rows ever appended

    def append(self, step: int, row: np.ndarray) -> None:
        # Hot path: two writes and counters; the fold runs once per ``chunk`` rows.
        if self._len == self._recent_cap:
            self._fold_oldest(self._chunk)
        i = self._start + self._len
        if i >= self._recent_cap:
            i -= self._recent_cap
        self._steps[i] = step
        self._rows[i] = row
        self._len += 1
        self.total += 1

    def _fold_oldest(self, k: int) -> None:
        """Fold the ``k`` oldest ring rows into the buckets, as folding them one by one would."""
        cap, a = self._recent_cap, self._start
        if a + k <= cap:  # views: the rows are read before append overwrites their slots
            steps, rows = self._steps[a:a + k], self._rows[a:a + k]
        else:  # the chunk wraps (only when ``recent`` is not a multiple of ``chunk``): join the two pieces
            steps = np.concatenate([self._steps[a:], self._steps[:a + k - cap]])
            rows = np.concatenate([self._rows[a:], self._rows[:a + k - cap]])
        self._start = (a + k) % cap
        self._len -= k
        pos = 0
        b = self._nb - 1
        if b >= 0 and self._b_count[b] < self._width:  # top up the last, partial bucket
            t = min(k, int(self._width - self._b_count[b]))
            seg = rows[:t]
            # fmin/fmax: a NaN never hides a finite extreme; a bucket of NaN rows only stays NaN.
            np.fmin(self._b_min[b], np.fmin.reduce(seg, axis=0), out=self._b_min[b])
            np.fmax(self._b_max[b], np.fmax.reduce(seg, axis=0), out=self._b_max[b])
            self._b_val[b] = seg[-1]
            self._b_last[b] = steps[t - 1]
            self._b_count[b] += t
            pos = t
        while pos < k:
            if self._nb == self._bucket_cap:  # only ever with the last bucket full, as one row at a time
                self._merge_pairs()
            w, nb = self._width, self._nb
            m = min(self._bucket_cap - nb, (k - pos) // w)
            if m:  # as many full buckets as fit, in one reshape-and-reduce
                end = pos + m * w
                seg = rows[pos:end].reshape(m, w, rows.shape[1])
                np.fmin.reduce(seg, axis=1, out=self._b_min[nb:nb + m])
                np.fmax.reduce(seg, axis=1, out=self._b_max[nb:nb + m])
                self._b_val[nb:nb + m] = seg[:, -1]
                self._b_first[nb:nb + m] = steps[pos:end:w]
                self._b_last[nb:nb + m] = steps[pos + w - 1:end:w]
                self._b_count[nb:nb + m] = w
                self._nb += m
                pos = end
            else:  # fewer rows left than a bucket holds (and room for one): a new partial bucket
                seg = rows[pos:]
                np.fmin.reduce(seg, axis=0, out=self._b_min[nb])
                np.fmax.reduce(seg, axis=0, out=self._b_max[nb])
                self._b_val[nb] = seg[-1]
                self._b_first[nb], self._b_last[nb] = steps[pos], steps[-1]
                self._b_count[nb] = k - pos
                self._nb += 1
                pos = k

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
        """Full-resolution (steps, rows) of the recent window, oldest first (copies).

        Once the run is longer than ``recent`` steps, the window holds between ``recent - chunk + 1`` and
        ``recent`` rows: the oldest ``chunk`` fold into buckets together.
        """
        idx = (self._start + np.arange(self._len)) % self._recent_cap
        return self._steps[idx].copy(), self._rows[idx].copy()

    def rows_since(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        steps, rows = self.recent()
        keep = steps > step
        return steps[keep], rows[keep]

    def since(self, step: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Full-resolution (steps, rows) recorded after ``step``, oldest first (copies of those rows only: a
        reader polling four times a second copies ~100 rows, not the window); None when some of them have
        already folded into buckets (the reader fell behind by more than the recent window)."""
        if self._nb and self._b_last[self._nb - 1] > step:
            return None
        cap, lo, hi = self._recent_cap, 0, self._len
        while lo < hi:  # steps ascend in ring order: the first one after ``step``
            mid = (lo + hi) // 2
            if self._steps[(self._start + mid) % cap] > step:
                hi = mid
            else:
                lo = mid + 1
        idx = (self._start + np.arange(lo, self._len)) % cap
        return self._steps[idx], self._rows[idx]  # fancy indexing copies

    def view(self) -> dict[str, np.ndarray]:
        """The whole run, decimated: ``step``, and per column ``value`` (last), ``lo`` and ``hi``.

        Recent rows have lo == hi == value. A bucket is drawn at its last step.
        """
        steps, rows = self.recent()
        nb = self._nb
        return {
            "step": np.concatenate([self._b_last[:nb], steps]),
            "value": np.concatenate([self._b_val[:nb], rows]),
            "lo": np.concatenate([self._b_min[:nb], rows]),
            "hi": np.concatenate([self._b_max[:nb], rows]),
        }

    def last(self) -> tuple[int, np.ndarray] | None:
        if self._len == 0:
            return None
        i = (self._start + self._len - 1) % self._recent_cap
        return int(self._steps[i]), self._rows[i].copy()

    def nbytes(self) -> int:
        arrays = (self._steps, self._rows, self._b_first, self._b_last, self._b_min, self._b_max, self._b_val,
                  self._b_count)
        return sum(a.nbytes for a in arrays)
