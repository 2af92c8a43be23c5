"""Bounded metric history: recent steps at full resolution, older ones decimated.

Memory stays constant however long the run. Older rows fold into buckets that keep the min, the max
and the last value of every column (never a mean), so a single-step spike survives any amount of
decimation. When the buckets fill up, neighbours merge pairwise and the bucket width doubles.
"""

from __future__ import annotations

import numpy as np


class History:
    def __init__(self, columns: list[str], recent: int = 2048, buckets: int = 2048):
        self.columns = list(columns)
        self.col = {c: i for i, c in enumerate(self.columns)}
        n = len(self.columns)
        self._recent_cap = recent
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
        if self._len == self._recent_cap:
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
            self._b_min[b] = np.fmin(self._b_min[b], row)  # fmin/fmax: a NaN never hides a finite extreme
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
        """Full-resolution (steps, rows) of the recent window, oldest first (copies)."""
        idx = (self._start + np.arange(self._len)) % self._recent_cap
        return self._steps[idx].copy(), self._rows[idx].copy()

    def rows_since(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        steps, rows = self.recent()
        keep = steps > step
        return steps[keep], rows[keep]

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
