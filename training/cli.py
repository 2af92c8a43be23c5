"""Command line: ``python -m training run|runs|presets|sweep``. Every config field is a flag, generated from the config.

Bad input exits with status 2 and one line naming the flag and what is allowed, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm

from . import export
from . import lr_sensitivity as LRS
from . import outcome as O
from . import registry as R
from . import sharpness as SH
from . import sweep as SW
from .config import FIELDS, Config, ConfigError, allowed_text, from_dict, from_preset
from .headless import train_into_store, train_rows
from .layout import clipped_share, clipped_words
from .store import Store, StoreError, default_data_dir

MAX_CONFIG_BYTES = 64 * 1024  # a JSON config file is small; refuse anything larger before reading it


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + message; one line is easier to act on
        raise UsageError(message)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_flags(parser: argparse.ArgumentParser, config_help: str, with_default: bool) -> None:
    """--preset, --config and one flag per Config field, generated from the fields' metadata (run and config)."""
    parser.add_argument("--preset", help="start from a named preset (see `presets`); flags override it")
    parser.add_argument("--config", help=config_help)
    for name, f in FIELDS.items():
        default = f"; default {_default_text(f)}" if with_default else ""
        parser.add_argument(_flag(name), dest=name, default=None, metavar=name.upper(),
                            help=f"{f.metadata['help']} ({allowed_text(f)}{default})".replace("%", "%%"))  # argparse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m training", description="Gradient Explosion Lab: train headless, list presets.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="train one configuration headless and write one row per step")
    _add_config_flags(run, "a JSON file of field: value (JSON only, at most 64 KiB)", with_default=True)
    run.add_argument("--out", help="output file: .csv or .parquet (events go to FILE.events.json)")
    run.add_argument("--store", nargs="?", const="", metavar="DIR",
                     help="also save the run, every step, to the run store in DIR (the dashboard's store: "
                          "$GEL_DATA_DIR, else ./data, when DIR is left out)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--threads", metavar="N", help=f"torch threads (default 1, as the dashboard uses: on a busy "
                     f"machine more threads fight over the cores; allowed: 1 to {max_threads()})")
    cfg = sub.add_parser("config", help="print a config as JSON (from a preset and flags), for run --config FILE")
    _add_config_flags(cfg, "a JSON file of field: value to start from", with_default=False)
    runs = sub.add_parser("runs", help="list the runs saved in a run store, newest first")
    runs.add_argument("--store", default="", metavar="DIR",
                      help="the store's folder (default $GEL_DATA_DIR, else ./data)")
    sub.add_parser("presets", help="list the presets, one line each")
    add_sweep_parser(sub)
    return p


def max_threads() -> int:
    return max(os.cpu_count() or 1, 1)


def set_threads(value: str | None) -> int:
    """One torch thread unless ``--threads N`` asks for more; UsageError naming the range otherwise."""
    hi = max_threads()
    try:
        n = int(value) if value is not None else 1
    except ValueError:
        n = None
    if n is None or not 1 <= n <= hi:
        raise UsageError(f"--threads: {value} is not allowed; allowed: 1 to {hi} (the CPU cores here)")
    torch.set_num_threads(n)
    return torch.get_num_threads()


def _default_text(f) -> str:
    v = f.default
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)


def load_config_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config: {path} is not a file")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise UsageError(f"--config: {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    # ValueError covers JSONDecodeError and a 5,000-digit number; RecursionError a deeply nested [[[...]]].
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise UsageError(f"--config: {path} is not valid JSON ({str(e)[:200]})") from None
    if not isinstance(d, dict):
        raise UsageError(f"--config: {path} must hold a JSON object of field: value")
    return d


def config_from_args(args: argparse.Namespace) -> Config:
    base = from_preset(args.preset) if args.preset else Config()
    if args.config:
        try:
            base = from_dict(load_config_file(args.config), base)
        except ConfigError as e:
            raise UsageError(f"--config: {args.config}: {e}") from None
    flags = {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}
    try:
        return from_dict(flags, base)
    except ConfigError as e:
        raise UsageError(f"{_flag(e.field)}: {e.shown} is not allowed; {e.allowed}") from None


def open_store(flag_value: str) -> Store:
    """The run store in DIR, or in the default data folder when DIR is empty; UsageError when it cannot open."""
    folder = Path(flag_value) if flag_value else default_data_dir()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--store: {folder} is not a folder")
    try:
        return Store(folder)
    except StoreError as e:
        raise UsageError(f"--store: {e}") from None


def check_out(value: str | None, flag: str = "--out") -> Path | None:
    """``--out`` as a Path, checked before anything trains; UsageError (one line) when it cannot be written."""
    if value is None:
        return None
    out = Path(value)
    try:
        export.check_destination(out, flag)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return out


def ended(status: str, outcome) -> str:
    """How a run ended in the outcome classifier's words ('exploded at step 5', 'learned', ...), as the lab and
    the map say it; the bare status when it did not end by itself (stopped, error)."""
    return outcome.words if outcome is not None else status


def cmd_run(args: argparse.Namespace) -> int:
    if args.out is None and args.store is None:
        raise UsageError("run: give --out FILE, --store [DIR], or both")
    out = check_out(args.out)
    cfg = config_from_args(args)
    threads = set_threads(args.threads)
    if args.store is not None:
        return _run_stored(args, cfg, out)
    try:
        trainer, rows, events, status = train_rows(cfg, progress=not args.quiet)
    except RuntimeError as e:  # e.g. a requested device that is absent
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        sidecar = export.write_run(out, rows[:, 0], trainer.columns, rows[:, 1:], cfg.to_dict(), status, events,
                                   device=str(trainer.device), threads=threads)
    except OSError as e:  # disk full, a file size limit: nothing half-written is left behind
        print(f"error: --out: cannot write {out} ({e.strerror or e}); nothing was written", file=sys.stderr)
        return 1
    loss = f"{rows[-1, 1]:.4g}" if len(rows) else "n/a"
    share = clipped_words(clipped_share(int((rows[:, 1 + trainer.columns.index("clipped")] > 0).sum()), len(rows)))
    col = SH.edge_column(cfg.optimizer)
    if col in trainer.columns:  # the last probe against its edge: which side of 2/lr the run ended on
        at = 1 + trainer.columns.index(col)
        words = SH.last_words(rows[:, 0], rows[:, at].tolist(), rows[:, 1 + trainer.columns.index("lr")],
                              SH.edge_factor(cfg.optimizer, cfg.momentum))
        share += f", {words}" if words else ""
    print(f"{ended(status, O.of_events(events))}: {len(rows)} steps recorded, last loss {loss}, {share}, wrote {out} "
          f"and {sidecar.name}", file=sys.stderr)
    return 0


def _run_stored(args: argparse.Namespace, cfg: Config, out: Path | None) -> int:
    store = open_store(args.store)
    for line in store.warnings():
        print(f"warning: {line}", file=sys.stderr)
    label = f"cli: {args.preset}" if args.preset else "cli"
    try:
        run_id, status, steps, clipped = train_into_store(cfg, store, label, progress=not args.quiet)
    except RuntimeError as e:  # e.g. a requested device that is absent
        print(f"error: {e}", file=sys.stderr)
        return 2
    if store.error:  # the last write failed and the writer has ended: not every step reached the store
        print(f"error: {store.error}; run {run_id} trained {steps} steps but is not fully saved", file=sys.stderr)
        return 1
    wrote = f"saved run {run_id} to {store.path}"
    if out is not None:
        try:
            sidecar = store.export(run_id, out)
        except OSError as e:
            print(f"error: --out: cannot write {out} ({e.strerror or e}); the run is saved as {run_id} in "
                  f"{store.path}", file=sys.stderr)
            return 1
        wrote += f", wrote {out} and {sidecar.name}"
    info = store.run_info(run_id)
    loss = f"{info['last_loss']:.4g}" if info["last_loss"] is not None else "n/a"
    e = store.outcomes().get(run_id)
    how = ended(status, O.Outcome.from_event(e) if e else None)
    print(f"{how}: {steps} steps recorded, last loss {loss}, {clipped_words(clipped_share(clipped, steps))}, {wrote}",
          file=sys.stderr)
    return 0 if status != "error" else 1


def cmd_config(args: argparse.Namespace) -> int:
    """The config as JSON on stdout: ``python -m training config --preset NAME > my.json``."""
    print(json.dumps(config_from_args(args).to_dict(), indent=1))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """The readable runs on stdout; what the store's check found and the unreadable rows on stderr, exit 1."""
    store = open_store(args.store)
    try:
        runs, unreadable = store.list_runs(), store.unreadable_runs()
    except StoreError as e:
        raise UsageError(f"--store: {e}") from None
    if runs:
        print(f"{'id':<14} {'status':<11} {'steps':>9} {'last loss':>10}  {'created':<19}  label")
    for r in runs:
        loss = f"{r['last_loss']:.4g}" if r["last_loss"] is not None else "n/a"
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created"]))
        print(f"{r['id']:<14} {r['status']:<11} {r['steps']:>9} {loss:>10}  {created:<19}  {r['label']}")
    if not runs:
        print("no stored runs", file=sys.stderr)
    for line in store.warnings() + [f"run {rid!r} is unreadable and not listed: {why}" for rid, why in unreadable]:
        print(f"warning: {line}", file=sys.stderr)
    return 1 if store.damage or unreadable else 0


def cmd_presets(_args) -> int:
    width = max(map(len, R.PRESETS))
    for name, p in R.PRESETS.items():
        print(f"{name:<{width}}  {p.summary}")
    return 0


def add_sweep_parser(sub) -> None:
    sw = sub.add_parser("sweep", help="the stability map: a grid of two axes x seeds, each cell a short run, "
                                      "classified exploded / vanished / learned / stuck")
    sw.add_argument("--x", required=True, metavar="AXIS", help="e.g. lr=1e-4:1:9 (9 values; log-spaced over more "
                    "than a decade, else linear; log:/lin: forces one; v1,v2,... lists them)")
    sw.add_argument("--y", required=True, metavar="AXIS", help="e.g. init_std=0.01:2:9, depth=1:32:8, a true/false "
                    "field qk_norm=false,true or a choice field norm_position=pre,post")
    sw.add_argument("--seeds", type=int, default=1, help="seeds per cell (default 1); the map shows the majority")
    sw.add_argument("--width", type=int, default=SW.DEFAULT_WIDTH,
                    help=f"hidden width for a depth axis (default {SW.DEFAULT_WIDTH})")
    sw.add_argument("--backend", choices=SW.BACKENDS, default="local",
                    help="local: a process pool over all cores (default); serial: this process; ray: Ray tasks")
    sw.add_argument("--address", help="Ray cluster address (backend ray), e.g. ray://head:10001 or auto")
    sw.add_argument("--workers", type=int, help="cells at once (default and most: one per core, as the memory "
                    "allows; backend ray: every Ray CPU)")
    # The run's config flags; --steps is per cell, SW.DEFAULT_STEPS unless given.
    _add_config_flags(sw, "a JSON file of field: value (JSON only, at most 64 KiB)", with_default=False)
    sw.add_argument("--out", help="output file: .parquet (metadata in its schema) or .csv (FILE.sweep.json)")
    sw.add_argument("--store", nargs="?", const="", metavar="DIR",
                    help="also save the sweep in the run store in DIR (default $GEL_DATA_DIR, else ./data)")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.out is None and args.store is None:
        raise UsageError("sweep: give --out FILE, --store [DIR], or both")
    out = check_out(args.out)  # before any cell trains: a sweep never ends with nowhere to go
    sweep = sweep_from_args(args)
    try:
        stream = sweep.run(args.backend, workers=args.workers, address=args.address)
    except (RuntimeError, ConnectionError) as e:  # Ray missing, or its cluster unreachable
        raise UsageError(f"--backend {args.backend}: {e}") from None
    t0 = time.perf_counter()
    results, rc = _collect(sweep, stream, progress=not args.quiet)
    meta = sweep.metadata(backend=args.backend, complete=rc == 0, seconds=time.perf_counter() - t0)
    wrote = _save_sweep(results, meta, args.store, out)
    if wrote is None:
        return 1
    counts = ", ".join(f"{n} {o}" for o, n in sorted(Counter(r.outcome for r in results).items()))
    print(f"{len(results)}/{len(sweep.cells)} cells ({counts}) in {meta['seconds']:.1f} s; wrote {' and '.join(wrote)}",
          file=sys.stderr)
    if (axis := LRS.lr_axis(meta)) is not None and results:
        print(LRS.summary(LRS.curves(results, axis), sweep.y if axis == "x" else sweep.x), file=sys.stderr)
    return rc


def sweep_from_args(args: argparse.Namespace) -> SW.Sweep:
    """The sweep the flags ask for, every cell validated and the store checked before anything trains."""
    axes = []
    for flag in ("x", "y"):
        try:
            axes.append(SW.parse_axis(getattr(args, flag)))
        except SW.AxisError as e:
            raise UsageError(f"--{flag}: {e}") from None
    x, y = axes
    try:
        SW.check_workers(args.workers, args.backend)  # before anything starts: one per core, within the memory
    except SW.WorkersError as e:
        raise UsageError(f"--{e}") from None
    if args.store is not None:
        open_store(args.store)  # checked before any cell trains: a foreign or damaged store is refused now
    base = config_from_args(args)
    changes = SW.implied(base, (x.name, y.name), chosen=[k for k in FIELDS if getattr(args, k) is not None])
    if changes:
        base = base.replace(**changes)
        print("note: " + ", ".join(f"--{k} {v}" for k, v in changes.items()) + " so that the axes change the net",
              file=sys.stderr)
    try:
        return SW.Sweep(base, x, y, seeds=args.seeds, steps=base.steps if args.steps else SW.DEFAULT_STEPS,
                        width=args.width)
    except SW.AxisError as e:
        raise UsageError(str(e)) from None


def _collect(sweep: SW.Sweep, stream, progress: bool) -> tuple[list[SW.CellResult], int]:
    """The cells as they finish, and the exit status: 0, 130 (Ctrl-C) or 1 (a cell failed); the cells that
    finished are kept either way, and the saved map then says it is incomplete."""
    results, rc = [], 0
    bar = tqdm(total=len(sweep.cells), unit="cell", file=sys.stderr, dynamic_ncols=True) if progress else None
    try:
        for r in stream:
            results.append(r)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(dict(sorted(Counter(c.outcome for c in results).items())), refresh=False)
    except KeyboardInterrupt:
        sweep.cancel()
        print("interrupted: saving the finished cells", file=sys.stderr)
        rc = 130
    except SW.CellError as e:
        print(f"error: {e}; saving the finished cells", file=sys.stderr)
        rc = 1
    finally:
        stream.close()
        if bar is not None:
            bar.close()
    return results, rc


def _save_sweep(results: list[SW.CellResult], meta: dict, store: str | None, out: Path | None) -> list[str] | None:
    """Save to the store, then the file; what was written, or None (said on stderr) when the file could not be.
    The store comes first, so a file that then fails to write loses nothing."""
    wrote = []
    if store is not None:
        wrote.append(f"sweep {SW.save_to_store(results, meta, store=store or None)} in {SW.store_path(store)}")
    if out is not None:
        try:
            SW.save(out, results, meta)
            wrote.append(str(out))
        except OSError as e:
            if store is None:  # keep the cells somewhere: the default store
                wrote.append(f"sweep {SW.save_to_store(results, meta)} in {SW.store_path()}")
            print(f"error: --out: cannot write {out} ({e.strerror or e}); the cells are saved as "
                  f"{wrote[-1]}", file=sys.stderr)
            return None
    return wrote


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        commands = {"run": cmd_run, "config": cmd_config, "runs": cmd_runs, "presets": cmd_presets,
                    "sweep": cmd_sweep}
        return commands[args.command](args)
    except (UsageError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
