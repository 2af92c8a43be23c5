"""What SQLite would silently drop from a write-ahead log, found by reading the ``-wal`` file itself.

On open, SQLite replays the log up to the first frame that fails its checksum and ignores the rest without a
word: a garbled or cut log loses every commit after the damage, and the database that remains is consistent,
so no check inside SQLite can see it. This reads the file as the format documents it
(https://www.sqlite.org/fileformat2.html#walformat) and tells damage from the two things a healthy log holds:

- frames of an older generation (older salts) after the current ones: a checkpoint restarted the log in place;
- one unfinished frame of the current generation at its end: a process killed while writing it;

- current frames after a bad one that end no commit: the unfinished tail of a transaction (a crash, a
  rollback), partly written over by the next one.

Damage is then a commit after a bad frame (a garbled middle), a file cut inside a frame of the current log,
or a header that fails its checksum (SQLite then ignores the whole log). A log cut exactly at a frame boundary
looks like a log that was never longer, and damage to its very last commit like a crash while writing it:
neither can be told apart.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = {0x377F0682: "<u4", 0x377F0683: ">u4"}  # the checksum's word order: little- or big-endian
HEADER, FRAME_HEADER = 32, 24  # bytes
CHUNK = 1024  # frames checksummed at once: ~4 MB of pages, a few times that in work arrays
_M32 = 0xFFFFFFFF


def damage(db: str | Path) -> str | None:
    """Why ``DB-wal`` loses committed data when SQLite opens it, in one line; None when it is sound or absent."""
    wal = Path(f"{db}-wal")
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return None
    if not data:
        return None  # a checkpoint truncated it: nothing pending
    if len(data) < HEADER:
        return f"{wal.name} is cut short: {len(data)} bytes, less than its {HEADER}-byte header"
    magic, _version, page, _seq, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:HEADER])
    order = MAGIC.get(magic)
    if order is None or page < 512 or page > 65536 or page & (page - 1):
        return f"{wal.name} has a damaged header: SQLite ignores every commit in it"
    if (c1, c2) != tuple(int(v) for v in _checksum(np.frombuffer(data[:24], order).astype(np.uint64)[None],
                                                    (0, 0))[0]):
        return f"{wal.name} has a damaged header: SQLite ignores every commit in it"
    size = FRAME_HEADER + page
    n, tail = divmod(len(data) - HEADER, size)
    frames = np.frombuffer(data, np.uint8, n * size, HEADER).reshape(n, size)
    head = frames[:, :FRAME_HEADER].copy().view(">u4").astype(np.uint64)  # pgno, commit, salt1, salt2, ck1, ck2
    current = (head[:, 2] == salt1) & (head[:, 3] == salt2)
    seeds = np.vstack([[[c1, c2]], head[:-1, 4:6]]) if n else np.zeros((0, 2), np.uint64)
    ok = np.empty(n, bool)
    for i in range(0, n, CHUNK):  # each frame's checksum continues from the one stored in the frame before it
        part = frames[i:i + CHUNK]
        words = np.concatenate([part[:, :8], part[:, FRAME_HEADER:]], axis=1).copy().view(order)
        got = _checksum(words.astype(np.uint64), seeds[i:i + CHUNK])
        ok[i:i + CHUNK] = (got == head[i:i + CHUNK, 4:6]).all(axis=1)
    valid = current & ok
    bad = np.flatnonzero(~valid)
    if len(bad):
        # After the first bad frame, current frames are normal only as the unfinished tail of a transaction a
        # crash or a rollback left behind, later written over from its start: such frames never end a commit.
        after = slice(bad[0] + 1, None)
        lost = int(np.count_nonzero(valid[after] & (head[after, 1] > 0)))
        if lost:
            return (f"{wal.name} is garbled at frame {bad[0] + 1} of {n}: SQLite drops the {lost} commit(s) "
                    f"stored after it")
    if tail not in (0, FRAME_HEADER) and (not n or valid[-1]):  # a cut inside the current log
        start = HEADER + n * size  # a write is a frame header, then its page: a crash leaves 0 or 24 bytes more
        if tail < 16 or struct.unpack(">2I", data[start + 8:start + 16]) == (salt1, salt2):
            return f"{wal.name} is cut short inside frame {n + 1}: SQLite drops the commits from there on"
    return None


def _checksum(words: np.ndarray, seeds) -> np.ndarray:
    """SQLite's WAL checksum of each row of 32-bit ``words`` (an even count), continuing from ``seeds`` (rows, 2).

    The loop is ``s0 += x[2k] + s1; s1 += x[2k+1] + s0`` mod 2^32, a linear map of (s0, s1): after K pairs
    the state is M^K s + sum_k M^(K-1-k) u_k with M = [[1, 1], [1, 2]] and u_k = (x[2k], x[2k] + x[2k+1]).
    Done as two dot products per frame instead of 1,024 Python steps (uint64 wraps mod 2^64, a multiple of 2^32).
    """
    k = words.shape[1] // 2
    powers = _powers(k)  # (k + 1, 2, 2): M^0 .. M^k
    u0 = words[:, 0::2]
    u1 = (u0 + words[:, 1::2]) & _M32
    rev = powers[k - 1::-1] if k else powers[:0]  # M^(K-1-k) for k = 0 .. K-1
    seeds = np.asarray(seeds, np.uint64).reshape(-1, 2)
    out = np.empty((len(words), 2), np.uint64)
    for r in range(2):
        acc = (u0 * rev[:, r, 0]).sum(axis=1) + (u1 * rev[:, r, 1]).sum(axis=1)
        out[:, r] = (acc + powers[k, r, 0] * seeds[:, 0] + powers[k, r, 1] * seeds[:, 1]) & _M32
    return out


_POWERS: dict[int, np.ndarray] = {}


def _powers(k: int) -> np.ndarray:
    if k not in _POWERS:
        p, out = (1, 0, 0, 1), []
        for _ in range(k + 1):
            out.append(p)
            a, b, c, d = p  # p @ M
            p = ((a + b) & _M32, (a + 2 * b) & _M32, (c + d) & _M32, (c + 2 * d) & _M32)
        _POWERS[k] = np.array(out, np.uint64).reshape(k + 1, 2, 2)
    return _POWERS[k]
