"""``python -m bench [--quick] [--only P1,P4] [--markdown]``: run the benchmarks, print one table."""

from __future__ import annotations

import argparse
import sys
import time

import torch

from . import Row, machine, table

SUITES = {  # id -> module; imported lazily so --only P4 does not pay for the others
    "P1": "step_overhead", "P5": "step_overhead", "P4": "history_scale",
    "P2": "dashboard", "P3": "dashboard", "P3'": "dashboard", "P6": "dashboard", "P7": "dashboard",
    "S1": "server_limits", "S2": "server_limits", "S3": "server_limits", "S4": "server_limits", "S5": "server_limits",
    "C1": "cli_cost", "P8": "sharpness_cost", "P9": "transformer_cost",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="few, short blocks and no browser (a smoke run, ~30 s)")
    p.add_argument("--only", default="",
                   help="comma-separated ids, e.g. P1,P4 (P1 and P5 run together, as do P2, P3, P3', P6, P7)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown (for docs/benchmarks.md)")
    args = p.parse_args(argv)
    wanted = [x.strip().upper() for x in args.only.split(",") if x.strip()] or list(SUITES)
    unknown = [x for x in wanted if x not in SUITES]
    if unknown:
        p.error(f"--only: unknown id {', '.join(unknown)}; known: {', '.join(SUITES)}")
    torch.set_num_threads(1)  # the reference: one torch thread
    info = machine()
    print(" | ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    rows: list[Row] = []
    t0 = time.perf_counter()
    for module in dict.fromkeys(SUITES[x] for x in wanted):  # each module once, in order
        mod = __import__(f"bench.{module}", fromlist=["run"])
        rows += [r for r in mod.run(quick=args.quick) if r.id in wanted]
    print(table(rows, markdown=args.markdown))
    print(f"({time.perf_counter() - t0:.0f} s; median of alternating blocks, min and max; "
          f"load now {machine()['load (1/5/15 min)']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
