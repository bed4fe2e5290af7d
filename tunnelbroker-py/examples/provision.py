"""Provision users from a CSV export: subscribe each, write their credentials.

    python examples/provision.py BROKER_DIR users.csv OUT_DIR [--jobs N]
        [--init POOL ENDPOINT]

The CSV is the kind of export a university or ISP user database produces,
with a header row:

    username,email,full_name,type
    alice,alice@example.org,Alice Example,subnet
    bob,bob@example.org,Bob Example,hermit

``type`` is ``subnet`` or ``hermit`` (empty means subnet); an optional
``os`` column takes ``linux`` or ``windows``. Users that are already
subscribed keep their assignment (the script can be re-run after adding
rows); every active user's credentials are (re)written to OUT_DIR as
``<id>/`` with ``ca.crt``, ``<id>.crt`` and ``<id>.key`` (0600). Bad rows are
reported with the broker's own message and do not stop the run. Exit status:
0 if every row was provisioned, 1 if some failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tunnelbroker
from tunnelbroker import Broker, Client


@dataclass
class Outcome:
    line: int
    username: str
    client: Optional[Client] = None
    output: Optional[Path] = None
    existed: bool = False
    error: Optional[str] = None


def write_credentials(broker: Broker, client_id: str, out_dir: Path) -> Path:
    """Writes a client's CA certificate, certificate and key (0600) into
    ``out_dir/<id>/`` and returns that folder.

    (Once the broker's ``bundle(id, path)`` is available, a single call
    writes the client's whole OpenVPN archive instead.)
    """
    cred = broker.credentials(client_id)
    folder = out_dir / client_id
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / "ca.crt").write_text(broker.ca_certificate)
    (folder / f"{client_id}.crt").write_text(cred.certificate)
    if cred.key is not None:
        key_path = folder / f"{client_id}.key"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(cred.key)
    return folder


def provision_row(broker: Broker, out_dir: Path, line: int, row: dict[str, str]) -> Outcome:
    username = (row.get("username") or "").strip()
    result = Outcome(line, username)
    try:
        try:
            result.client = broker.add_client(
                username,
                kind=(row.get("type") or "subnet").strip() or "subnet",
                os=(row.get("os") or "linux").strip() or "linux",
                email=(row.get("email") or "").strip() or None,
                name=(row.get("full_name") or "").strip() or None,
            )
        except tunnelbroker.AlreadyExistsError:
            existing = broker.client(username)
            if existing.state != "active":
                raise
            result.client, result.existed = existing, True
        result.output = write_credentials(broker, username, out_dir)
    except tunnelbroker.Error as e:
        result.error = str(e)
    return result


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("broker", type=Path, help="the broker directory")
    ap.add_argument("users", type=Path, help="the CSV file")
    ap.add_argument("out", type=Path, help="where to write the credentials")
    ap.add_argument("--jobs", type=int, default=4, help="threads (default 4)")
    ap.add_argument("--init", nargs=2, metavar=("POOL", "ENDPOINT"),
                    help="create the broker first")
    args = ap.parse_args(argv)

    try:
        with args.users.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        print(f"error: {args.users}: {e}", file=sys.stderr)
        return 2
    try:
        if args.init:
            broker = Broker.init(args.broker, pool=args.init[0], endpoint=args.init[1])
        else:
            broker = Broker.open(args.broker)
    except tunnelbroker.Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    with broker, ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        # Line 1 is the header; DictReader rows start at line 2.
        futures = [pool.submit(provision_row, broker, args.out, i + 2, row)
                   for i, row in enumerate(rows)]
        outcomes = [f.result() for f in futures]

    added = [o for o in outcomes if o.client and not o.existed and not o.error]
    kept = [o for o in outcomes if o.existed and not o.error]
    failed = [o for o in outcomes if o.error]
    for o in added + kept:
        assert o.client is not None and o.output is not None
        note = " (already subscribed)" if o.existed else ""
        print(f"{o.client.id:20} {o.client.kind:6} {str(o.client.prefix):28} "
              f"{o.output}{note}")
    for o in failed:
        print(f"line {o.line}: {o.username or '(no username)'}: {o.error}", file=sys.stderr)
    print(f"{len(added)} subscribed, {len(kept)} already subscribed, {len(failed)} failed; "
          f"credentials in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
