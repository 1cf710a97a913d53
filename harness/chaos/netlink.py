"""Netlink route sockets in network namespaces, for the fault families and probes that use pyroute2.

``IPRoute(netns=...)`` makes its socket in a forked child; in the chaos agent, a Ray worker with
many threads, that fork hung (a lock held by another thread at fork time is never released in
the child) and the fault's inject never answered. A short-lived thread that enters the
namespace (``setns`` is per thread), opens the socket and ends does the same without a fork:
the socket stays bound to the namespace it was made in.

Imports pyroute2: import this module inside the hooks that need it, never at a family's load.
"""

from __future__ import annotations

import ctypes
import errno as errno_names
import os
import socket
import threading

from pyroute2 import IPRoute

from harness.chaos.nft import NETNS_DIR
from harness.errors import FaultError

__all__ = ["NETNS_DIR", "ipr", "netlink_socket"]

_CLONE_NEWNET = 0x40000000
_NETLINK_ROUTE = 0


def ipr(netns: str | None) -> IPRoute:
    """A netlink route socket in ``netns`` (None or '': ours), without forking."""
    return IPRoute(fileno=netlink_socket(netns)) if netns else IPRoute()


def netlink_socket(netns: str) -> int:
    """The file descriptor of a NETLINK_ROUTE socket opened inside network namespace ``netns``."""
    libc = ctypes.CDLL(None, use_errno=True)
    out: dict[str, int] = {}

    def enter_and_open() -> None:
        try:
            ns_fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            out["errno"] = exc.errno or 0
            return
        try:
            if libc.setns(ns_fd, _CLONE_NEWNET) != 0:
                out["errno"] = ctypes.get_errno()
                return
            out["fd"] = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE).detach()
        finally:
            os.close(ns_fd)

    thread = threading.Thread(target=enter_and_open, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "fd" not in out:
        code = out.get("errno", 0)
        raise FaultError(f"cannot open a netlink socket in netns {netns}: {errno_names.errorcode.get(code, code)}")
    return out["fd"]
