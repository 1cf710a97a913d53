"""Partition and loss with nftables: one table per run, two base chains per fault.

One nftables table per run, ``inet harness_<run id>`` (run id sanitised to nft's identifier
characters; a hash suffix keeps two different ids from colliding), holding for each fault its
own base chains ``f_<fault>_out`` (hook output) and ``f_<fault>_in`` (hook input); revert
deletes exactly the fault's chains and then the table once no chain is left in it. Inject is
one atomic ``nft -f -`` transaction (:mod:`harness.chaos.nft`), idempotent: chains are
flushed and refilled, and ``add`` of an existing table or chain is a no-op.

Partition and loss act on traffic the target itself sends and receives (output and input
hooks), not on traffic it forwards as a router.
"""

from __future__ import annotations

import ipaddress

from harness.chaos import nft
from harness.chaos.families.network.params import NetworkLossFault, NetworkPartitionFault

__all__ = ["CHAIN_PRIORITY", "TABLE_PREFIX", "chain_names", "inject", "table_name"]

#: Priority of our filter chains: before the usual filter chains (0), after conntrack (-200).
CHAIN_PRIORITY = -50
#: Every table of a network fault is ``inet`` and starts with this: what a sweep looks for.
TABLE_PREFIX = "harness_"


def table_name(run_id: str) -> str:
    """``harness_<run id>``: the one nftables table (family inet) of a run."""
    return f"{TABLE_PREFIX}{nft.ident(run_id, 64)}"


def chain_names(fault_name: str) -> tuple[str, str]:
    base = f"f_{nft.ident(fault_name, 48)}"
    return f"{base}_out", f"{base}_in"


def _rules(fault: NetworkPartitionFault | NetworkLossFault) -> tuple[list[str], list[str]]:
    """The rule bodies of the output and input chains."""
    out_if = f'oifname "{fault.target.interface}" ' if fault.target.interface else ""
    in_if = f'iifname "{fault.target.interface}" ' if fault.target.interface else ""
    by_family: dict[str, list[str]] = {"ip": [], "ip6": []}
    for peer in fault.params.peers:
        net = ipaddress.ip_network(peer)
        by_family["ip" if net.version == 4 else "ip6"].append(str(net))
    out_rules: list[str] = []
    in_rules: list[str] = []
    for family, nets in by_family.items():
        if not nets:
            continue
        peers = "{ " + ", ".join(nets) + " }"
        if isinstance(fault, NetworkPartitionFault):
            if fault.params.ports:
                ports_set = "{ " + ", ".join(str(p) for p in fault.params.ports) + " }"
                out_rules.append(
                    f"{out_if}{family} daddr {peers} meta l4proto {{ tcp, udp }} th dport {ports_set} drop"
                )
                in_rules.append(f"{in_if}{family} saddr {peers} meta l4proto {{ tcp, udp }} th sport {ports_set} drop")
            else:
                out_rules.append(f"{out_if}{family} daddr {peers} drop")
                in_rules.append(f"{in_if}{family} saddr {peers} drop")
        else:
            n = fault.params.percent
            verdict = "drop" if n >= 100 else f"numgen random mod 100 < {n} drop"
            out_ports = in_ports = ""
            if fault.params.ports:
                ports_set = "{ " + ", ".join(str(p) for p in fault.params.ports) + " }"
                out_ports = f" meta l4proto {{ tcp, udp }} th dport {ports_set}"
                in_ports = f" meta l4proto {{ tcp, udp }} th sport {ports_set}"
            if fault.params.direction in ("egress", "both"):
                out_rules.append(f"{out_if}{family} daddr {peers}{out_ports} {verdict}")
            if fault.params.direction in ("ingress", "both"):
                in_rules.append(f"{in_if}{family} saddr {peers}{in_ports} {verdict}")
    return out_rules, in_rules


def _chain_spec(hook: str) -> str:
    return f"{{ type filter hook {hook} priority {CHAIN_PRIORITY}; policy accept; }}"


def inject(fault: NetworkPartitionFault | NetworkLossFault, netns: str, table: str) -> None:
    """One atomic nft transaction: table, the fault's two chains (flushed), their rules."""
    out_chain, in_chain = chain_names(fault.name)
    out_rules, in_rules = _rules(fault)
    lines = [f"add table inet {table}"]
    for chain, hook, rules in ((out_chain, "output", out_rules), (in_chain, "input", in_rules)):
        lines.append(f"add chain inet {table} {chain} {_chain_spec(hook)}")
        lines.append(f"flush chain inet {table} {chain}")
        lines.extend(f"add rule inet {table} {chain} {rule}" for rule in rules)
    nft.run(netns, ["-f", "-"], "\n".join(lines) + "\n")
