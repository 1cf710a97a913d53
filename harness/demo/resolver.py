"""The demo gateway's DNS resolver: asks the demo's DNS server for each new connection, as Go does.

A Go service resolves a name with its own resolver (``netgo``: it reads the nameserver from
resolv.conf and speaks DNS itself) each time it dials, and keeps no cache of answers; what
outlives an answer is the connection dialled with it. This resolver does the same for the
demo's gateway, against the one nameserver it is given (the demo's "cluster DNS", which
``harness demo up`` runs on loopback): an A query over UDP, ``attempts`` tries of ``timeout``
seconds each, and Go's words for what went wrong (``no such host``, ``server misbehaving``,
``i/o timeout``). It asks nothing else: the machine's resolver is never involved.

Runs under gevent (the gateway is monkey-patched), so a query waits without blocking others.
"""

from __future__ import annotations

import random
import socket

from dnslib import QTYPE, RCODE, DNSError, DNSRecord

__all__ = ["Resolver"]


class Resolver:
    """A-record lookups against one nameserver, no cache: each call asks again."""

    def __init__(self, nameserver: tuple[str, int], timeout: float = 0.5, attempts: int = 2) -> None:
        self.nameserver = nameserver
        self.timeout = timeout
        self.attempts = attempts

    def lookup(self, name: str) -> str:
        """The first IPv4 address of ``name``. Raises ``socket.gaierror`` (an ``OSError``, as
        ``getaddrinfo`` does) with Go's message: ``EAI_NONAME`` for a name that does not exist,
        ``EAI_AGAIN`` for a server that failed or did not answer."""
        query = DNSRecord.question(name, "A")
        query.header.id = random.randrange(65536)
        for _ in range(self.attempts):
            try:
                answer = self._ask(query)
            except OSError:  # a timeout included
                continue
            rcode = answer.header.rcode
            if rcode == RCODE.NXDOMAIN:
                raise socket.gaierror(socket.EAI_NONAME, f"lookup {name}: no such host")
            if rcode != RCODE.NOERROR:
                raise socket.gaierror(socket.EAI_AGAIN, f"lookup {name} on {self._server()}: server misbehaving")
            for record in answer.rr:
                if record.rtype == QTYPE.A:
                    return str(record.rdata)
            raise socket.gaierror(socket.EAI_NONAME, f"lookup {name}: no such host")
        raise socket.gaierror(socket.EAI_AGAIN, f"lookup {name} on {self._server()}: read udp: i/o timeout")

    def _server(self) -> str:
        return f"{self.nameserver[0]}:{self.nameserver[1]}"

    def _ask(self, query: DNSRecord) -> DNSRecord:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.nameserver)
            sock.send(query.pack())
            while True:  # a late answer to an earlier attempt is not this one's
                try:
                    answer = DNSRecord.parse(sock.recv(4096))
                except DNSError:
                    continue
                if answer.header.id == query.header.id:
                    return answer
