"""The demo's metrics server: Debian's VictoriaMetrics, scraping the demo services' ``/metrics``.

It answers the Prometheus query API (``/api/v1/query``, PromQL) on ``base + METRICS_OFFSET``, so
a scenario's ``probes`` can ask what the demo's servers report about themselves. The supervisor
runs it as one more child (started first, stopped with the rest, killed with the supervisor);
it scrapes every service and itself each second and answers with at most one second of lag
(``-search.latencyOffset=1s``: by default VictoriaMetrics hides the last 30 s from queries).
Without the binary (``apt-get install victoria-metrics``) the demo runs without it.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

__all__ = [
    "METRICS_NAME",
    "METRICS_OFFSET",
    "SCRAPED",
    "VICTORIA_METRICS",
    "available",
    "metrics_command",
    "metrics_port",
    "metrics_url",
    "scrape_config",
    "wait_ready",
]

METRICS_NAME = "metrics"  # its pid file and log: <dir>/metrics.pid, <dir>/metrics.log
METRICS_OFFSET = 8
VICTORIA_METRICS = "victoria-metrics"
#: The services scraped, by port offset: their /metrics (prometheus-client's text format).
SCRAPED = {"gateway": 0, "catalog": 1, "cart": 2, "payments": 3}
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy


def available() -> str | None:
    """The VictoriaMetrics binary, None when it is not installed."""
    return shutil.which(VICTORIA_METRICS) or (
        "/usr/bin/victoria-metrics" if Path("/usr/bin/victoria-metrics").exists() else None
    )


def metrics_port(base_port: int) -> int:
    return base_port + METRICS_OFFSET


def metrics_url(base_port: int) -> str:
    return f"http://127.0.0.1:{metrics_port(base_port)}"


def scrape_config(base_port: int, payments_host: str = "127.0.0.1") -> str:
    """A Prometheus ``scrape_configs`` block: each service as job ``demo`` with its name as
    ``service``, and VictoriaMetrics itself as job ``victoria-metrics``, every second. Payments is
    scraped where it listens (``payments_host``: in its namespace, a partition cuts its scrape too)."""
    jobs = [
        {
            "job_name": "demo",
            "scrape_interval": "1s",
            "static_configs": [
                {"targets": [f"{payments_host if name == 'payments' else '127.0.0.1'}:{base_port + offset}"]}
                | {"labels": {"service": name}}
                for name, offset in SCRAPED.items()
            ],
        },
        {
            "job_name": "victoria-metrics",
            "scrape_interval": "1s",
            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port(base_port)}"]}],
        },
    ]
    return json.dumps({"scrape_configs": jobs}, indent=2) + "\n"  # JSON is YAML


def metrics_command(directory: Path, base_port: int, payments_host: str = "127.0.0.1") -> list[str] | None:
    """The command that runs the demo's VictoriaMetrics (its scrape config written now), None without it."""
    binary = available()
    if binary is None:
        return None
    config = directory / "scrape.yml"
    config.write_text(scrape_config(base_port, payments_host))
    return [
        binary,
        f"-httpListenAddr=127.0.0.1:{metrics_port(base_port)}",
        f"-storageDataPath={directory / 'victoria-metrics'}",
        f"-promscrape.config={config}",
        "-search.latencyOffset=1s",
        "-retentionPeriod=1d",
        "-loggerLevel=ERROR",
    ]


def wait_ready(base_port: int, timeout: float) -> bool:
    """Whether the demo's VictoriaMetrics answered ``/health`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with _DIRECT.open(f"{metrics_url(base_port)}/health", timeout=1.0) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
