"""Print the address plan of a pool and hand out a few assignments.

    python examples/address_plan.py 2001:db8:0:f100::/56
"""

from __future__ import annotations

import sys

import tunnelbroker
from tunnelbroker import Allocator, Pool


def main(argv: list[str]) -> int:
    text = argv[1] if len(argv) > 1 else "2001:db8:0:f100::/56"
    try:
        pool = Pool(text)
    except tunnelbroker.InvalidInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"pool          {pool}")
    print(f"routing /64   {pool.routing_net}")
    print(f"hermit /64    {pool.hermit_net}")
    print(
        f"subnets       {pool.first_subnet.prefix} .. {pool.last_subnet.prefix}"
        f" ({pool.subnet_capacity})"
    )

    plan = Allocator(pool)
    for kind in ("subnet", "subnet", "hermit"):
        a = plan.allocate(kind)
        s = a.subnet
        if s is not None:
            print(
                f"{kind:7} {a.prefix}  routing {s.routing_net}"
                f"  server {s.server_end}  client {s.client_end}"
            )
        else:
            print(f"{kind:7} {a.prefix}  tunnel {a.tunnel_address}")
    owner = plan.lookup(pool.first_subnet.lan_address)
    print(f"owner of {pool.first_subnet.lan_address}: {owner}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
