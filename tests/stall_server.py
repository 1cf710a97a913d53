"""A tiny HTTP/1.1 keep-alive server on loopback that stalls on a fixed wall-clock schedule.

``/stall...`` requests that arrive while ``time() % period >= period - stall`` are held until
the period ends, like a server frozen by a GC pause or a lock; every other request is
answered at once. Used by the open-model tests to show coordinated omission.

    python tests/stall_server.py --port 18990 --period 5 --stall 1
"""

from __future__ import annotations

import argparse
import asyncio
import time

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"


def stall_left(now: float, period: float, stall: float) -> float:
    """Seconds until the current stall ends, or 0 outside a stall."""
    phase = now % period
    return period - phase if phase >= period - stall else 0.0


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, period: float, stall: float) -> None:
    try:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return
            length = 0
            while True:
                header = await reader.readline()
                if header in (b"\r\n", b"\n", b""):
                    break
                if header.lower().startswith(b"content-length:"):
                    length = int(header.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            parts = request_line.split()
            if len(parts) > 1 and parts[1].startswith(b"/stall"):
                wait = stall_left(time.time(), period, stall)
                if wait:
                    await asyncio.sleep(wait)
            writer.write(RESPONSE)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main(port: int, period: float, stall: float) -> None:
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, period, stall), "127.0.0.1", port, backlog=1024, reuse_address=True
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--period", type=float, default=5.0)
    parser.add_argument("--stall", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.period, args.stall))
