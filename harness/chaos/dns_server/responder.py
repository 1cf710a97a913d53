"""The DNS responder's answering side: static records, faults, and forwarding to an upstream.

One :class:`Responder` answers raw DNS messages (:meth:`Responder.answer`: bytes in, bytes
or None out); :mod:`.serve` feeds it from its UDP and TCP listeners. What it answers, in order:

1. a fault (:mod:`.rules`) matching the name decides: an error rcode, no answer (timeout), a
   spoofed address, or a delay before forwarding;
2. a static record (``--record name=address``, the demo's "cluster DNS" zone) answers A or
   AAAA (an empty answer for the other type);
3. everything else is forwarded, as it came, to the upstream (over UDP, or TCP when the query
   came over TCP or the UDP answer was truncated), from a socket carrying ``SO_MARK`` ``mark``
   so an nftables redirect of port 53 can exempt it; with no upstream the answer is NXDOMAIN.
   An upstream that does not answer in :data:`UPSTREAM_TIMEOUT` seconds gives SERVFAIL.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSError, DNSRecord

from harness.chaos.dns_server.rules import Action, decide, normal_name

__all__ = ["UPSTREAM_TIMEOUT", "Responder", "Stats"]

#: Seconds one forwarded query may take before the client gets SERVFAIL.
UPSTREAM_TIMEOUT = 2.0
#: TTL of spoofed and static answers: short, so a resolver that caches does so for a second only.
TTL = 1
_SO_MARK = 36
_RCODES = {"nxdomain": RCODE.NXDOMAIN, "servfail": RCODE.SERVFAIL, "refused": RCODE.REFUSED}


@dataclass
class Stats:
    """Counters for ``GET /health``."""

    queries: int = 0
    faulted: int = 0
    forwarded: int = 0
    static: int = 0
    upstream_errors: int = 0
    by_fault: dict[str, int] = field(default_factory=dict)


class Responder:
    """Answers DNS messages; faults are put and removed by name while it runs (thread-safe)."""

    def __init__(
        self,
        upstream: tuple[str, int] | None,
        records: dict[str, str],
        mark: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.upstream = upstream
        self.records = {normal_name(k): str(ipaddress.ip_address(v)) for k, v in records.items()}
        self.mark = mark
        self.stats = Stats()
        self._faults: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    # ------------------------------------------------------------ faults

    @property
    def faults(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._faults)

    def set_fault(self, name: str, spec: dict[str, Any]) -> bool:
        """Put ``spec`` (validated) under ``name``; True when it is new. A replaced fault keeps its place."""
        with self._lock:
            created = name not in self._faults
            self._faults[name] = spec
            return created

    def delete_fault(self, name: str | None) -> bool:
        """Remove one fault (or all with None); False when there was no such fault."""
        with self._lock:
            if name is None:
                self._faults.clear()
                return True
            return self._faults.pop(name, None) is not None

    # ------------------------------------------------------------ answering

    def answer(self, data: bytes, tcp: bool = False) -> bytes | None:
        """The reply to one DNS message, or None for no reply (a timeout fault, an unparsable query)."""
        try:
            query = DNSRecord.parse(data)
        except (DNSError, IndexError, struct.error, ValueError):
            return None
        self.stats.queries += 1
        if not query.questions:
            return None
        question = query.q
        qname, qtype = str(question.qname), QTYPE.get(question.qtype, str(question.qtype))
        with self._lock:
            faults = list(self._faults.items())
            action = decide(qname, str(qtype), faults, self._rng) if faults else Action("forward")
        if action.fault:
            self.stats.faulted += 1
            self.stats.by_fault[action.fault] = self.stats.by_fault.get(action.fault, 0) + 1
        if action.delay:
            time.sleep(action.delay)
        if action.what == "error":
            if action.error == "timeout":
                return None
            reply = query.reply()
            reply.header.rcode = _RCODES[action.error]
            return bytes(reply.pack())
        if action.what == "spoof":
            return self._addresses(query, [action.address] if action.address else [])
        static = self.records.get(normal_name(qname))
        if static is not None:
            self.stats.static += 1
            version = ipaddress.ip_address(static).version
            wanted = (str(qtype), version) in (("A", 4), ("AAAA", 6))
            return self._addresses(query, [static] if wanted else [])
        return self._forward(query, data, tcp)

    def _addresses(self, query: DNSRecord, addresses: list[str]) -> bytes:
        reply = query.reply()
        for address in addresses:
            if ipaddress.ip_address(address).version == 4:
                reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(address), ttl=TTL))
            else:
                reply.add_answer(RR(query.q.qname, QTYPE.AAAA, rdata=AAAA(address), ttl=TTL))
        return bytes(reply.pack())

    def _forward(self, query: DNSRecord, data: bytes, tcp: bool) -> bytes:
        if self.upstream is None:
            reply = query.reply()
            reply.header.rcode = RCODE.NXDOMAIN
            return bytes(reply.pack())
        try:
            answer = self._ask_tcp(data) if tcp else self._ask_udp(data)
            if not tcp and DNSRecord.parse(answer).header.tc:
                answer = self._ask_tcp(data)
        except (OSError, DNSError, struct.error, ValueError):
            self.stats.upstream_errors += 1
            reply = query.reply()
            reply.header.rcode = RCODE.SERVFAIL
            return bytes(reply.pack())
        self.stats.forwarded += 1
        return answer

    def _socket(self, kind: int) -> socket.socket:
        assert self.upstream is not None
        family = socket.AF_INET6 if ":" in self.upstream[0] else socket.AF_INET
        sock = socket.socket(family, kind)
        try:
            if self.mark is not None:
                sock.setsockopt(socket.SOL_SOCKET, _SO_MARK, self.mark)
            sock.settimeout(UPSTREAM_TIMEOUT)
            sock.connect(self.upstream)
        except OSError:
            sock.close()
            raise
        return sock

    def _ask_udp(self, data: bytes) -> bytes:
        with self._socket(socket.SOCK_DGRAM) as sock:
            sock.send(data)
            deadline = time.monotonic() + UPSTREAM_TIMEOUT
            while True:  # skip stray datagrams that are not the answer to this query
                answer = sock.recv(65535)
                if answer[:2] == data[:2]:
                    return answer
                sock.settimeout(max(0.01, deadline - time.monotonic()))

    def _ask_tcp(self, data: bytes) -> bytes:
        with self._socket(socket.SOCK_STREAM) as sock:
            sock.sendall(struct.pack("!H", len(data)) + data)
            length = struct.unpack("!H", _read(sock, 2))[0]
            return _read(sock, length)


def _read(sock: socket.socket, size: int) -> bytes:
    buffer = b""
    while len(buffer) < size:
        chunk = sock.recv(size - len(buffer))
        if not chunk:
            raise ConnectionError("the upstream closed the connection mid-answer")
        buffer += chunk
    return buffer
