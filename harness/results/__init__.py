"""Results: the only code that talks to InfluxDB.

* :mod:`.schema` - every measurement, tag and field name (the one owner of the schema).
* :mod:`.points` - a run's data as points; :mod:`.samples` - a run's per-second samples read back.
* :mod:`.lineproto` - :class:`Point`, :func:`encode` and :func:`parse` (pure line protocol).
* :mod:`.writer` - :class:`ResultsWriter` (batched, non-blocking, spooling; :mod:`.spool`,
  :mod:`.stats`) and its transports (:mod:`.transports`); :func:`open_writer` (:mod:`.sink`)
  builds the one a run uses.
* :mod:`.v2` - the InfluxDB v2 transport (``influxdb-client``), imported only when asked for.
* :mod:`.influxql` - quoting and the :class:`Query` protocol; :mod:`.query` -
  :class:`InfluxQuery`, a small InfluxQL client for reports and tests.
* :mod:`.embedded` - the local influxd harness starts when the default URL has no server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.errors import TransportError
from harness.results.embedded import (
    DEFAULT_URL,
    EmbeddedInflux,
    ensure_local_influx,
    load_command,
    ping,
    stop_local_influx,
)
from harness.results.lineproto import Point, encode, encode_many, parse
from harness.results.query import InfluxQuery, Series
from harness.results.sink import open_writer
from harness.results.stats import WriterStats
from harness.results.transports import NullTransport, Transport, V1Transport
from harness.results.writer import ResultsWriter

if TYPE_CHECKING:
    from harness.results.v2 import V2Transport

__all__ = [
    "DEFAULT_URL",
    "EmbeddedInflux",
    "InfluxQuery",
    "NullTransport",
    "Point",
    "ResultsWriter",
    "Series",
    "Transport",
    "TransportError",
    "V1Transport",
    "V2Transport",
    "WriterStats",
    "encode",
    "encode_many",
    "ensure_local_influx",
    "load_command",
    "open_writer",
    "parse",
    "ping",
    "stop_local_influx",
]


def __getattr__(name: str) -> Any:
    """Import the v2 transport (and with it influxdb-client) only when someone asks for it."""
    if name == "V2Transport":
        from harness.results.v2 import V2Transport

        return V2Transport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
