"""The fault proxy: a gevent TCP/HTTP forwarder with faults switched on and off over HTTP.

Shaped like Toxiproxy: one listen address forwards to one upstream, and a small control API
adds and removes faults while traffic flows, so connections already open (Locust keeps them
alive) feel a fault the moment it is added and stop feeling it the moment it is removed.

Why it parses HTTP at all, and only that far: abort, reset and latency are decided *per
request*, so the proxy must know where each request begins on a kept-alive connection. It
reads request heads (request line and headers up to the blank line) and skips
``Content-Length`` bodies; responses are never parsed. A connection whose first bytes are
not an HTTP/1.x request line is forwarded as plain TCP, and every chunk the client sends
counts as a "request" there. A request body sent with ``Transfer-Encoding: chunked`` (or a
head larger than :data:`MAX_HEAD`) switches that connection to plain TCP for the rest of
its life rather than risking a wrong request boundary. Pipelined requests are forwarded
but decided as one.

What each fault does (several may be active; they compose):

* ``proxy.latency``: the first chunk of each response is held ``latency`` +/- ``jitter``
  seconds (uniform) after it arrives from upstream; the rest of the response follows
  unpaced, so a large response is delayed once, not per chunk. Latencies of several faults
  add up.
* ``proxy.bandwidth``: every write in either direction is paced to ``rate`` bits/s per
  connection, as a link of that rate would carry it: each chunk (20 ms of data at most) is
  sent after its own transmission time once the link is free, so a lone small response is
  slowed too; no credit is saved while idle. The lowest rate wins.
* ``proxy.reset``: a share of requests is answered by closing the client connection with
  ``SO_LINGER`` 0, which sends a TCP RST; the upstream connection is closed too.
* ``proxy.abort``: a share of HTTP requests is answered by the proxy with ``status`` and a
  short body at once (a latency fault does not delay it), the request (and its body) is
  never forwarded, and the connection stays usable.
* ``http.abort``, ``http.delay``, ``http.replace``, ``http.patch``: HTTP rules (Chaos Mesh
  HTTPChaos) acting only on the requests they match by method, path, host and headers, on
  the request or on its response (:mod:`.rules`; a response a rule rewrites is read whole,
  :mod:`.messages`).

Several processes may share the listening port (``SO_REUSEPORT``; :mod:`.workers`): the first
serves the control API and answers a change once every worker has it.

With no fault active, a chunk read from one side is written to the other as it is, after
one ``find`` for the end of the head and one regular expression for ``Content-Length``:
see ``benchmarks/proxy.py`` for what that costs.

With ``mark``, every upstream socket carries ``SO_MARK`` so that an nftables redirect of the
service's port (the transparent mode of :mod:`harness.chaos.proxy`) can exempt the proxy's
own connections to the service and not loop them back into the proxy.

Control API (JSON; ``control`` is ``host:port`` or ``unix:/path``):

* ``GET /health``: ``{"status": "ok", "listen", "upstream", "faults", "workers",
  "workers_answering", "requests", "aborted",
  "reset", "bytes", "bytes_up", "bytes_down", "connections", "active_connections",
  "upstream_errors", "uptime"}``
* ``GET /faults``: ``{"faults": {name: {"kind": ..., params...}}}``
* ``PUT /faults/<name>`` with ``{"kind": "proxy.latency", "latency": 0.05, "jitter": 0}``
  (or ``proxy.bandwidth`` ``rate``, ``proxy.reset`` ``percent``, ``proxy.abort`` ``status``
  ``percent``, or an HTTP rule: ``{"kind": "http.abort", "method": "POST", "path":
  "/api/*", "status": 503, "percent": 50}``, the keys of :mod:`.rules`): 201 when created,
  200 when it replaced a fault of that name (so PUT twice is one fault), 400 with
  ``{"error": ...}`` when invalid, 500 when a worker process did not confirm the change.
* ``DELETE /faults/<name>``: 204, or 404 when there is no such fault (clients treat both as
  done). ``DELETE /faults`` removes every fault.

This package imports only gevent and the standard library, and does not monkey-patch:
``harness proxy`` and ``python -m harness.chaos.proxy_server`` call :func:`serve`.
"""

from __future__ import annotations

from harness.chaos.proxy_server.forward import MAX_HEAD
from harness.chaos.proxy_server.serve import main, serve
from harness.chaos.proxy_server.spec import KINDS, FaultSpec, parse_address, validate

__all__ = ["KINDS", "MAX_HEAD", "FaultSpec", "main", "parse_address", "serve", "validate"]
