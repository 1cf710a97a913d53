"""A small HTTP/1.1 service for the fault proxy tests, run as a subprocess (also inside a namespace).

    python tests/proxy_upstream.py HOST:PORT LIFETIME_SECONDS

``GET /ok`` answers ``ok``; ``GET /bytes/N`` answers N bytes; ``POST /echo`` answers the length
of the body it read; ``/reflect...`` (any method) answers JSON saying the method, path, headers
and body it received; ``GET /chunked/N`` answers JSON ``{"n": N}`` with a chunked body.
Keep-alive, threaded, gone by itself after LIFETIME_SECONDS so a test that dies cannot leave it
running for long. Prints ``ready`` once it accepts connections.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: with Nagle on, the body waits for a delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _reflect(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("latin-1"),
        }
        data = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "reflect")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunked(self) -> None:
        data = json.dumps({"n": int(self.path.rsplit("/", 1)[1])}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in (data[:3], data[3:]):
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def do_PUT(self) -> None:
        self._reflect()

    def do_DELETE(self) -> None:
        self._reflect()

    def do_GET(self) -> None:
        if self.path.startswith("/reflect"):
            self._reflect()
        elif self.path.startswith("/chunked/"):
            self._chunked()
        elif self.path.startswith("/bytes/"):
            self._answer(b"x" * int(self.path[len("/bytes/") :]))
        else:
            self._answer(b"ok\n")

    def do_POST(self) -> None:
        if self.path.startswith("/reflect"):
            self._reflect()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(str(len(body)).encode())


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A fault proxy resetting or dropping connections is what the tests do on purpose.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def main() -> None:
    host, _, port = sys.argv[1].rpartition(":")
    lifetime = float(sys.argv[2])
    server = Server((host, int(port)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    time.sleep(lifetime)


if __name__ == "__main__":
    main()
