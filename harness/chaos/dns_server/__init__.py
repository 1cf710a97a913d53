"""The DNS responder: answers DNS over UDP and TCP, with faults switched on and off over HTTP.

Shaped like the fault proxy (:mod:`harness.chaos.proxy_server`): one process answers queries
on one port and forwards the names no fault or record claims to one upstream, and a small
control API adds and removes faults by name while queries flow, so a fault takes effect on
the next query and goes with its removal. The ``dns`` fault family starts one for a fault
window (inside a target network namespace, reached through an nftables redirect of port 53)
or puts faults into a running one (``target.control``); ``harness demo up`` runs one as the
demo's "cluster DNS", serving the demo's names and forwarding nothing.

What a query gets is :mod:`.responder`'s business, which fault matches :mod:`.rules`', and
the listeners and the control API :mod:`.serve`'s. dnslib (wire format only) and the
standard library; no gevent, no monkey-patching.
"""

from __future__ import annotations

from harness.chaos.dns_server.responder import Responder
from harness.chaos.dns_server.rules import KINDS, decide, validate
from harness.chaos.dns_server.serve import main, serve, split_address

__all__ = ["KINDS", "Responder", "decide", "main", "serve", "split_address", "validate"]
