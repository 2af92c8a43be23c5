"""A damaged or foreign run store: refused in one line before anything trains, bad rows left out and named,
rows a garbled or cut write-ahead log dropped found on open, and the files as found kept aside."""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from training import cli, wal
from training.config import Config
from training.manager import RunManager
from training.store import Store, StoreError

REPO = Path(__file__).resolve().parent.parent
TINY = Config(hidden_sizes=(16,), dataset="gaussian", batch_size=8, steps=200, probe_every=1000)
RUN_ARGS = ["run", "--hidden-sizes", "16", "--dataset", "gaussian", "--batch-size", "8", "--steps", "20", "--quiet"]
FRAME = 24 + 4096  # a WAL frame: header, then one page (SQLite's default page size)


# ---- a store as a killed server leaves it: every commit still in the -wal ----------------------------------------

def _crash_image(dest: Path, runs: int = 3) -> dict[str, int]:
    """Train ``runs`` runs into a store, flushing often (one commit each), and copy its files while a connection
    holds the log open, as a kill -9 leaves them; returns {run id: rows stored}."""
    src = dest.parent / (dest.name + "-live")
    store = Store(src)
    holder = sqlite3.connect(store.path)  # keeps the log from being checkpointed away when the writer closes
    holder.execute("SELECT 1 FROM runs").fetchall()
    manager = RunManager(store=store, idle_pause_s=0)
    try:
        for _ in range(runs):
            runner = manager.start(TINY)
            while not runner.wait(0.02):
                store.flush()
            assert store.flush()
        assert store.close()
        counts = {r["id"]: r["steps"] for r in store.list_runs()}
        dest.mkdir()
        for suffix in ("", "-wal", "-shm"):
            shutil.copy2(f"{store.path}{suffix}", dest / f"runs.sqlite3{suffix}")
    finally:
        assert manager.shutdown()
        holder.close()
    return counts


@pytest.fixture(scope="module")
def crash(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    d = tmp_path_factory.mktemp("crash") / "image"
    return d, _crash_image(d)


def _copy(image: Path, to: Path) -> Path:
    shutil.copytree(image, to)
    return to / "runs.sqlite3"


def _stored(path: Path) -> int:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)  # read-only: the log stays as it is
    try:
        return conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
    finally:
        conn.close()


def _garble(path: Path, frame: int) -> bytes:
    """Random bytes over one frame's page (its header intact); returns the log as garbled."""
    log = Path(f"{path}-wal")
    data = bytearray(log.read_bytes())
    start = 32 + frame * FRAME + 24
    data[start:start + 4096] = os.urandom(4096)
    log.write_bytes(bytes(data))
    return bytes(data)


def test_a_clean_crash_image_is_sound_and_keeps_every_row(crash, tmp_path):
    image, counts = crash
    path = _copy(image, tmp_path / "d")
    assert len(counts) == 3 and _stored(path) == sum(counts.values()) == 600
    assert wal.damage(path) is None
    store = Store(path.parent)
    assert store.damage == [] and store.kept is None and store.warnings() == []


def test_a_garbled_wal_is_found_on_open_and_its_files_are_kept_before_any_checkpoint(crash, tmp_path):
    image, counts = crash
    path = _copy(image, tmp_path / "d")
    frames = (Path(f"{path}-wal").stat().st_size - 32) // FRAME
    garbled = _garble(path, frames // 2)
    assert _stored(path) < sum(counts.values())  # the loss is real: SQLite drops every commit after the frame

    store = Store(path.parent)
    assert len(store.damage) == 1 and "garbled at frame" in store.damage[0] and "-wal" in store.damage[0]
    assert store.kept is not None and store.kept.parent == path.parent
    assert {p.name for p in store.kept.iterdir()} == {"runs.sqlite3", "runs.sqlite3-wal", "runs.sqlite3-shm",
                                                      "REASONS.txt"}
    assert (store.kept / "REASONS.txt").read_text() == store.damage[0] + "\n"
    assert (store.kept / "runs.sqlite3-wal").read_bytes() == garbled  # the evidence, byte for byte
    assert any("lost data" in w for w in store.warnings()) and any(str(store.kept) in w for w in store.warnings())

    # The store stays usable; once the log is checkpointed the file is sound, and the copy is still pointed at.
    assert not Path(f"{path}-wal").exists() or wal.damage(path) is None
    again = Store(path.parent)
    assert again.damage == [] and again.kept_copies() == [store.kept]
    assert any(str(store.kept) in w and "earlier" in w for w in again.warnings())


def test_a_truncated_wal_is_found_on_open(crash, tmp_path):
    image, counts = crash
    path = _copy(image, tmp_path / "d")
    log = Path(f"{path}-wal")
    cut = log.read_bytes()[: log.stat().st_size * 3 // 5]
    log.write_bytes(cut)
    assert _stored(path) < sum(counts.values())
    store = Store(path.parent)
    assert len(store.damage) == 1 and "cut short" in store.damage[0]
    assert (store.kept / "runs.sqlite3-wal").read_bytes() == cut


def test_the_runs_command_warns_in_one_line_each_and_exits_1(crash, tmp_path, capsys):
    image, _ = crash
    path = _copy(image, tmp_path / "d")
    _garble(path, 3)
    assert cli.main(["runs", "--store", str(path.parent)]) == 1
    out, err = capsys.readouterr()
    assert not out or out.splitlines()[0].split()[:2] == ["id", "status"]  # what survived, if anything did
    assert "warning: the run store at" in err and "garbled" in err and "Traceback" not in err
    assert all(line.startswith("warning: ") or line == "no stored runs" for line in err.splitlines())


def test_a_run_with_fewer_rows_than_it_recorded_is_named(crash, tmp_path):
    image, counts = crash
    path = _copy(image, tmp_path / "d")
    rid = sorted(counts)[0]
    with sqlite3.connect(path) as conn:  # what a log replayed over newer pages looks like: rows gone, count kept
        conn.execute("DELETE FROM metrics WHERE run_id = ? AND step >= 120", (rid,))
        conn.execute("DELETE FROM metrics WHERE run_id = ? AND step = 5", (sorted(counts)[1],))
        conn.execute("UPDATE runs SET n_steps = n_steps - 1 WHERE id = ?", (sorted(counts)[1],))
        conn.execute("INSERT INTO metrics VALUES ('ghost', 0, x'00')")
    conn.close()
    store = Store(path.parent)
    assert f"run {rid!r} holds 120 of the 200 steps it recorded" in store.damage
    assert any(sorted(counts)[1] in d and "gaps" in d for d in store.damage)
    assert any("'ghost'" in d and "not listed" in d for d in store.damage)
    assert store.kept is not None and len(store.list_runs()) == 3  # still readable
    again = Store(path.parent)  # damage in the file itself is found at every open, and copied once
    assert again.damage == store.damage and again.kept == store.kept and again.kept_copies() == [store.kept]


# ---- the log check against logs SQLite wrote: no false alarm on what a healthy log holds ---------------------------

@pytest.fixture
def log_path(tmp_path) -> Iterator[Path]:
    """A database whose log was restarted in place by a checkpoint (older frames after the current ones), plus a
    rolled-back transaction that spilled to the log, partly written over by a shorter commit. Its connection stays
    open for the test, so nothing checkpoints the log away."""
    path = tmp_path / "x.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (x BLOB)")
    for _ in range(60):
        conn.execute("INSERT INTO t VALUES (?)", (os.urandom(3000),))
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    for _ in range(10):  # the log restarts from its start: the older generation's frames stay behind
        conn.execute("INSERT INTO t VALUES (?)", (os.urandom(3000),))
    conn.execute("PRAGMA cache_size=2")  # a big transaction spills pages to the log before its commit...
    conn.execute("BEGIN")
    for _ in range(40):
        conn.execute("INSERT INTO t VALUES (?)", (os.urandom(3000),))
    conn.execute("ROLLBACK")  # ...and rolls back: its frames stay, to be written over by the next commit
    conn.execute("INSERT INTO t VALUES (?)", (os.urandom(100),))
    try:
        yield path
    finally:
        conn.close()


def _frames(path: Path) -> list[tuple[int, int, bool]]:
    """(page number, commit size, current salts) of every whole frame of the log."""
    data = Path(f"{path}-wal").read_bytes()
    salts = struct.unpack(">2I", data[16:24])
    out = []
    for i in range((len(data) - 32) // FRAME):
        pgno, commit, s1, s2 = struct.unpack(">4I", data[32 + i * FRAME:32 + i * FRAME + 16])
        out.append((pgno, commit, (s1, s2) == salts))
    return out


def test_checksums_match_sqlite_and_a_healthy_log_with_history_is_sound(log_path):
    path = log_path
    frames = _frames(path)
    last_commit = max(i for i, (_, commit, c) in enumerate(frames) if c and commit)
    leftover = [c for _, _, c in frames[last_commit + 1:]]
    assert leftover[0] and not all(leftover), "the rolled-back frames, then the older generation's"
    assert wal.damage(path) is None
    data = Path(f"{path}-wal").read_bytes()
    old = bytearray(data)
    old[32 + (len(frames) - 1) * FRAME + 24:] = os.urandom(4096)  # the last frame: an older generation's
    Path(f"{path}-wal").write_bytes(bytes(old))
    assert wal.damage(path) is None
    # A garbled second frame is found as the second: the first passes the checksum from the header's, and
    # the commits after it pass theirs, so the checksum is SQLite's.
    Path(f"{path}-wal").write_bytes(data)
    _garble(path, 1)
    assert "garbled at frame 2 of" in wal.damage(path)


def test_a_crash_between_a_frame_header_and_its_page_is_not_damage(log_path):
    path = log_path
    data = Path(f"{path}-wal").read_bytes()
    Path(f"{path}-wal").write_bytes(data + data[32:32 + 24])  # a current frame's header, its page not yet
    assert wal.damage(path) is None


def test_a_log_cut_inside_a_current_frame_is_damage_and_an_empty_one_is_not(log_path):
    path = log_path
    data = Path(f"{path}-wal").read_bytes()
    Path(f"{path}-wal").write_bytes(data[:32 + 2 * FRAME + 1000])
    assert "cut short inside frame 3" in wal.damage(path)
    Path(f"{path}-wal").write_bytes(data[:20])
    assert "cut short" in wal.damage(path)
    Path(f"{path}-wal").write_bytes(b"")
    assert wal.damage(path) is None
    bad_header = bytearray(data)
    bad_header[12] ^= 0xFF  # the checkpoint sequence number: covered by the header's checksum
    Path(f"{path}-wal").write_bytes(bytes(bad_header))
    assert "damaged header" in wal.damage(path)


# ---- a file that is not a run store, or that SQLite finds damaged: one line, nothing trained ----------------------

def _not_trained(monkeypatch):
    def fail(*_a, **_k):
        raise AssertionError("trained on a store that should have been refused")

    monkeypatch.setattr(cli, "train_into_store", fail)


def _one_line_exit_2(argv, capsys) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: --store: "), err
    return err


def test_a_foreign_schema_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    _not_trained(monkeypatch)
    d = tmp_path / "d"
    d.mkdir()
    with sqlite3.connect(d / "runs.sqlite3") as conn:
        conn.execute("CREATE TABLE runs (name TEXT, value INTEGER)")
    conn.close()
    with pytest.raises(StoreError, match="is not a run store: its table 'runs' has no column"):
        Store(d)
    assert "not a run store" in _one_line_exit_2(["runs", "--store", str(d)], capsys)
    assert "not a run store" in _one_line_exit_2([*RUN_ARGS, "--store", str(d)], capsys)


def test_a_newer_schema_and_a_file_that_is_no_database_are_refused(tmp_path, capsys):
    newer, junk = tmp_path / "newer", tmp_path / "junk"
    Store(newer)
    with sqlite3.connect(newer / "runs.sqlite3") as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    assert "newer version (schema 99" in _one_line_exit_2(["runs", "--store", str(newer)], capsys)
    junk.mkdir()
    (junk / "runs.sqlite3").write_bytes(os.urandom(8192))
    assert "not a database" in _one_line_exit_2(["runs", "--store", str(junk)], capsys)


def test_a_store_sqlite_finds_damaged_is_refused_before_training_and_kept(tmp_path, capsys, monkeypatch):
    d = tmp_path / "d"
    assert cli.main([*RUN_ARGS, "--store", str(d)]) == 0
    capsys.readouterr()
    path = d / "runs.sqlite3"
    data = bytearray(path.read_bytes())
    page = 4096 * 2  # a b-tree page of one of the tables
    data[page:page + 4096] = os.urandom(4096)
    path.write_bytes(bytes(data))
    _not_trained(monkeypatch)
    err = _one_line_exit_2([*RUN_ARGS, "--store", str(d)], capsys)
    assert "is damaged" in err and "a copy of its files is kept in" in err
    (kept,) = d.glob("runs.sqlite3.damaged-*")
    assert (kept / "runs.sqlite3").read_bytes() == bytes(data)
    _one_line_exit_2(["runs", "--store", str(d)], capsys)
    assert list(d.glob("runs.sqlite3.damaged-*")) == [kept]


def test_a_store_write_that_fails_ends_the_run_command_with_one_line(tmp_path, capsys, monkeypatch):
    def disk_full(self, conn, *batches):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "_write", disk_full)
    assert cli.main([*RUN_ARGS, "--store", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot write to the run store") and "not fully saved" in err
    assert len(err.splitlines()) == 1


# ---- rows that cannot be read: left out of the listing, named, never a traceback ----------------------------------

BAD_ROWS = [
    ("config_json", "'{nope'", "config_json is not valid JSON"),
    ("config_json", "'[1, 2]'", "config_json is not a JSON object"),
    ("columns_json", "'oops'", "columns_json is not valid JSON"),
    ("created", "'yesterday'", "its times are not numbers"),
    ("label", "x'00ff'", "its label or status is not text"),
]


@pytest.mark.parametrize("column, value, why", BAD_ROWS)
def test_an_unreadable_row_is_left_out_and_named(tmp_path, capsys, column, value, why):
    d = tmp_path / "d"
    assert cli.main([*RUN_ARGS, "--store", str(d)]) == 0
    good = Store(d).list_runs()[0]["id"]
    with sqlite3.connect(d / "runs.sqlite3") as conn:
        conn.execute("INSERT INTO runs (id, label, config_json, status, created, updated, columns_json) "
                     "VALUES ('bad', 'x', '{}', 'finished', 2e9, 2e9, '[]')")
        conn.execute(f"UPDATE runs SET {column} = {value} WHERE id = 'bad'")
    conn.close()
    store = Store(d)
    assert [r["id"] for r in store.list_runs()] == [good]
    ((rid, text),) = store.unreadable_runs()
    assert rid == "bad" and why in text
    for read in (store.run_info, store.load_run):
        with pytest.raises(StoreError, match=f"run 'bad' in .* is unreadable: {why}"):
            read("bad")
    capsys.readouterr()
    assert cli.main(["runs", "--store", str(d)]) == 1
    out, err = capsys.readouterr()
    ids = [line.split()[0] for line in out.splitlines()[1:]]  # a random hex id may hold "bad": compare ids
    assert ids == [good]
    assert err.strip() == f"warning: run 'bad' is unreadable and not listed: {text}"


def test_an_unreadable_event_is_shown_as_one_not_dropped(tmp_path):
    d = tmp_path / "d"
    assert cli.main([*RUN_ARGS, "--store", str(d)]) == 0
    store = Store(d)
    rid = store.list_runs()[0]["id"]
    with sqlite3.connect(store.path) as conn:
        conn.execute("INSERT INTO events (run_id, step, kind, json) VALUES (?, 7, 'spike', '{broken')", (rid,))
    conn.close()
    (event,) = [e for e in store.load_run(rid).events if e["kind"] == "unreadable"]
    assert event["step"] == 7 and "cannot be read" in event["message"]


def test_the_runs_command_on_a_bad_row_in_a_real_process_prints_no_traceback(tmp_path):
    d = tmp_path / "d"
    store = Store(d)
    with sqlite3.connect(store.path) as conn:
        conn.execute("INSERT INTO runs (id, label, config_json, status, created, updated, columns_json) "
                     "VALUES ('bad', 'x', '{nope', 'finished', 1, 1, '[]')")
    conn.close()
    r = subprocess.run([sys.executable, "-m", "training", "runs", "--store", str(d)], capture_output=True,
                       text=True, cwd=REPO, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == ["no stored runs",
                                     "warning: run 'bad' is unreadable and not listed: config_json is not valid "
                                     "JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
                                     "(char 1))"]


def test_an_unreadable_outcome_event_is_left_out_of_the_outcomes(tmp_path):
    d = tmp_path / "d"
    assert cli.main([*RUN_ARGS, "--store", str(d)]) == 0
    store = Store(d)
    rid = store.list_runs()[0]["id"]
    assert store.outcomes()[rid]["kind"] == "outcome"
    with sqlite3.connect(store.path) as conn:
        conn.execute("INSERT INTO runs (id, label, config_json, status, created, updated, columns_json) "
                     "VALUES ('other', 'x', '{}', 'finished', 1, 1, '[]')")
        conn.execute("INSERT INTO events (run_id, step, kind, json) VALUES ('other', 3, 'outcome', '{broken')")
    conn.close()
    assert set(store.outcomes()) == {rid}


# ---- stored sweeps in the same file ------------------------------------------------------------------------------

def test_a_sweep_row_that_cannot_be_read_is_listed_as_unreadable_and_the_others_load(tmp_path):
    from training import sweep as S

    sweep = S.Sweep(Config(hidden_sizes=(8,), dataset="gaussian", batch_size=8), "lr=0.01,0.1", "depth=1,2",
                    steps=2)
    sid = S.save_to_store(list(sweep.run("serial")), sweep.metadata("serial", True, 0.1), store=tmp_path)
    with sqlite3.connect(S.store_path(tmp_path)) as conn:
        conn.execute("INSERT INTO sweeps VALUES ('bad', 'x', 2e9, '{nope', '[]', 3, 1)")
    conn.close()
    listed = {s["id"]: s for s in S.list_stored(tmp_path)}
    assert listed["bad"]["label"].startswith("unreadable") and not listed["bad"]["complete"]
    assert listed[sid]["cells"] == 4 and S.load_stored(sid, tmp_path)[1]["x"]["name"] == "lr"


def test_a_foreign_store_is_refused_before_a_sweep_and_in_one_line_on_the_map_page(tmp_path, capsys,
                                                                                   monkeypatch):
    from streamlit.testing.v1 import AppTest

    from training import sweep as S

    d = tmp_path / "d"
    d.mkdir()
    with sqlite3.connect(d / "runs.sqlite3") as conn:
        conn.execute("CREATE TABLE sweeps (name TEXT)")
        conn.execute("CREATE TABLE runs (name TEXT)")
    conn.close()
    monkeypatch.setattr(S.Sweep, "run", lambda *a, **k: pytest.fail("swept into a store that was refused"))
    err = _one_line_exit_2(["sweep", "--x", "lr=0.01,0.1", "--y", "depth=1,2", "--store", str(d)], capsys)
    assert "not a run store" in err
    with pytest.raises(StoreError, match="cannot use the sweeps in the run store"):
        S.list_stored(d)

    def page():
        from components import page_map

        page_map.render()

    monkeypatch.setenv("GEL_DATA_DIR", str(d))
    at = AppTest.from_function(page, default_timeout=30).run()
    assert not at.exception and any("Cannot list the saved maps" in w.value for w in at.warning)


def test_a_step_count_that_is_not_a_number_is_damage_and_unreadable_not_a_crash(tmp_path):
    d = tmp_path / "d"
    Store(d)
    with sqlite3.connect(d / "runs.sqlite3") as conn:
        conn.execute("INSERT INTO runs (id, label, config_json, status, created, updated, columns_json, n_steps) "
                     "VALUES ('odd', 'x', '{}', 'finished', 1, 1, '[]', 'many')")
    conn.close()
    store = Store(d)
    assert store.damage == ["run 'odd' holds 0 of the 'many' steps it recorded"]
    assert store.unreadable_runs() == [("odd", "its step count is not a whole number")]
