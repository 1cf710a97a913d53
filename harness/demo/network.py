"""The demo's second "host": payments runs in its own network namespace, behind a veth pair.

On loopback every fault to one service hits every other one too (a netem delay, a tbf or a
downed link on ``lo`` would slow Ray and InfluxDB as well). With payments in a namespace of
its own, the gateway's calls to payments cross one link that nothing else uses, and network
faults can act on exactly that link:

* namespace ``hdemo-<base port>``, its end of the veth named ``eth0``, address ``.2``;
* the host's end ``hdemo<base port>``, address ``.1``, in ``10.214.<base port % 250>.0/24``.

The fault proxy (on loopback, like the gateway) forwards to payments' address in the
namespace. Creating namespaces needs root and iproute2; elsewhere the demo keeps payments on
loopback and says so. The namespace is removed by ``harness demo down`` (deleting it takes
the veth pair with it), and ``up`` reuses one left over by a demo that died hard.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoNet", "ensure", "for_base_port", "remove"]

NETNS_DIR = Path("/run/netns")
IP_TIMEOUT = 10.0


@dataclass(frozen=True)
class DemoNet:
    """Names and addresses of the payments namespace of one demo (by its base port)."""

    netns: str
    host_interface: str
    netns_interface: str
    host_address: str
    payments_address: str
    prefix: int = 24

    @property
    def subnet(self) -> str:
        return f"{self.host_address.rsplit('.', 1)[0]}.0/{self.prefix}"


def for_base_port(base_port: int) -> DemoNet:
    third = base_port % 250
    return DemoNet(
        netns=f"hdemo-{base_port}",
        host_interface=f"hdemo{base_port}",
        netns_interface="eth0",
        host_address=f"10.214.{third}.1",
        payments_address=f"10.214.{third}.2",
    )


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT, check=check)


def unavailable_reason() -> str | None:
    """Why payments cannot get a namespace here, or None when it can."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    return None


def ensure(net: DemoNet) -> None:
    """Create the namespace, the veth pair and the addresses, or keep them if already there.

    Raises ``OSError`` or ``subprocess.CalledProcessError`` when something cannot be created;
    whatever was created by this call is removed again first.
    """
    if (NETNS_DIR / net.netns).exists() and _ip("link", "show", net.host_interface, check=False).returncode == 0:
        return
    remove(net)  # half a layout from a crash: start clean
    try:
        _ip("netns", "add", net.netns)
        _ip(
            "link",
            "add",
            net.host_interface,
            "type",
            "veth",
            "peer",
            "name",
            net.netns_interface,
            "netns",
            net.netns,
        )
        _ip("addr", "add", f"{net.host_address}/{net.prefix}", "dev", net.host_interface)
        _ip("link", "set", net.host_interface, "up")
        _ip("-n", net.netns, "addr", "add", f"{net.payments_address}/{net.prefix}", "dev", net.netns_interface)
        _ip("-n", net.netns, "link", "set", net.netns_interface, "up")
        _ip("-n", net.netns, "link", "set", "lo", "up")
    except BaseException:
        remove(net)
        raise


def remove(net: DemoNet) -> None:
    """Delete the namespace (its veth end, and so the pair, go with it); no error if absent."""
    if (NETNS_DIR / net.netns).exists():
        _ip("netns", "delete", net.netns, check=False)
    _ip("link", "delete", net.host_interface, check=False)
