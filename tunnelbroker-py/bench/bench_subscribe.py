"""Subscribe N clients (default 1,000) through Python and compare with Rust.

    python bench/bench_subscribe.py [N] [ROUNDS] [--rust PATH-TO-bench_subscribe]

Does what ``tunnelbroker-core/examples/bench_subscribe.rs`` does, through the
Python module: in a fresh broker (pool 2001:db8::/48, per-client mode, P-256
keys), N ``add_client`` calls alternating subnet/hermit, then one
``import_csv`` of the same N clients; best of ROUNDS (default 3). With
``--rust`` it runs the Rust example too and prints the ratios (the target is
at most 1.3).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from tunnelbroker import Broker


def fresh(tmp: str) -> Broker:
    return Broker.init(Path(tmp) / "b", pool="2001:db8::/48", endpoint="vpn.example.net")


def add_clients(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp, fresh(tmp) as broker:
        start = time.perf_counter()
        for i in range(n):
            broker.add_client(
                f"user{i}", kind="subnet" if i % 2 == 0 else "hermit", email=f"user{i}@example.org"
            )
        took = time.perf_counter() - start
        assert len(broker.clients()) == n
        return took


def import_csv(n: int) -> float:
    rows = ["id,kind,os,email,name"]
    for i in range(n):
        kind = "subnet" if i % 2 == 0 else "hermit"
        rows.append(f"user{i},{kind},linux,user{i}@example.org,User {i}")
    text = "\n".join(rows) + "\n"
    with tempfile.TemporaryDirectory() as tmp, fresh(tmp) as broker:
        start = time.perf_counter()
        report = broker.import_csv(text)
        took = time.perf_counter() - start
        assert len(report.added) == n
        return took


def best(rounds: int, f: Callable[[], float]) -> float:
    return min(f() for _ in range(rounds))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=1000)
    ap.add_argument("rounds", nargs="?", type=int, default=3)
    ap.add_argument("--rust", help="path of the Rust bench_subscribe example binary")
    args = ap.parse_args()
    add = best(args.rounds, lambda: add_clients(args.n)) * 1e3
    imp = best(args.rounds, lambda: import_csv(args.n)) * 1e3
    print(f"python add_client x{args.n}: {add:.1f} ms")
    print(f"python import_csv x{args.n}: {imp:.1f} ms")
    if args.rust:
        out = subprocess.run(
            [args.rust, str(args.n), str(args.rounds)], capture_output=True, text=True, check=True
        ).stdout
        print(out, end="")
        found = dict(re.findall(r"rust (\w+) x\d+: ([0-9.]+) ms", out))
        ratio_add = add / float(found["add_client"])
        ratio_imp = imp / float(found["import_csv"])
        print(f"ratio python/rust: add_client {ratio_add:.2f}, import_csv {ratio_imp:.2f}")
        if max(ratio_add, ratio_imp) > 1.3:
            print("over the 1.3x target", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
