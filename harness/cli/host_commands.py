"""``harness recover``, ``doctor``, ``proxy``, ``dns``, ``watchdog``, ``demo ...``, ``influx ...``: this host."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harness import paths
from harness.cli.app import errors_to_exit_codes
from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.demo.breaker import BreakerSettings

__all__ = [
    "demo_down",
    "demo_status",
    "demo_up",
    "dns",
    "doctor",
    "influx_start",
    "influx_stop",
    "proxy",
    "recover",
    "register",
    "watchdog",
]


def register(app: typer.Typer, demo_app: typer.Typer, influx_app: typer.Typer) -> None:
    app.command()(errors_to_exit_codes(recover))
    app.command()(errors_to_exit_codes(doctor))
    app.command()(proxy)  # long-running servers: their own exit codes, their own errors
    app.command()(dns)
    app.command()(watchdog)
    demo_app.command("up")(errors_to_exit_codes(demo_up))
    demo_app.command("down")(errors_to_exit_codes(demo_down))
    demo_app.command("status")(errors_to_exit_codes(demo_status))
    influx_app.command("start")(errors_to_exit_codes(influx_start))
    influx_app.command("stop")(errors_to_exit_codes(influx_stop))


def recover(
    sweep: Annotated[
        bool,
        typer.Option(
            "--sweep",
            help="Then remove every harness-tagged object left on this node that no journal knows "
            "(nft tables, qdiscs, ifb links, routes, stress and proxy processes), in every netns.",
        ),
    ] = False,
) -> None:
    """Revert every fault still recorded in this node's journal (after a crash)."""
    from harness.chaos.recover import recover as do_recover
    from harness.errors import FaultError

    lines = do_recover()
    for line in lines:
        typer.echo(line)
    if not lines:
        typer.echo("nothing to recover: no fault is outstanding in the journal")
    if sweep:
        from harness.chaos.sweep import sweep as do_sweep

        removed, failed = do_sweep()
        for line in [*removed, *failed]:
            typer.echo(line)
        if not removed and not failed:
            typer.echo("sweep: no harness object left on this node")
        if failed:
            raise FaultError(f"sweep: {len(failed)} object(s) could not be removed")


def doctor(
    scenario: Annotated[
        Path | None, typer.Argument(help="Also say which of this scenario's faults cannot work here.")
    ] = None,
) -> None:
    """Print what this host can do for faults (nftables, netem, tbf, cgroups, stress-ng, kube, ...).

    For each thing missing: what it is, and the Debian package or kernel module that brings it.

    With a scenario: exit 2 when one of its faults needs something missing, naming it.
    """
    from harness.chaos.capabilities import missing, probe, render
    from harness.scenario import load_scenario

    loaded = load_scenario(scenario) if scenario else None
    probed = probe()
    for line in render(probed):
        typer.echo(line)
    if loaded is not None:
        gaps = missing(loaded, probed)
        if gaps:
            raise ConfigError(f"{scenario}: cannot run here:\n  " + "\n  ".join(gaps))
        typer.echo(f"{scenario}: every fault can be applied on this host")


def proxy(
    listen: Annotated[str, typer.Option(help="host:port clients connect to.")],
    upstream: Annotated[str, typer.Option(help="host:port of the service behind the proxy.")],
    control: Annotated[str, typer.Option(help="host:port of the control API that proxy.* and http.* faults use.")],
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Processes sharing the listening port (default: the cores it may use)."),
    ] = None,
) -> None:
    """Run a fault proxy in front of a service; proxy.* and http.* faults with target.control act on it."""
    from harness.chaos.proxy_server import serve

    serve(listen, upstream, control, workers=workers)


def dns(
    listen: Annotated[str, typer.Option(help="host:port the DNS server answers on, UDP and TCP.")],
    control: Annotated[str, typer.Option(help="host:port of the control API that dns.* faults use.")],
    upstream: Annotated[
        str | None, typer.Option(help="host:port every name it does not answer itself goes to (none: NXDOMAIN).")
    ] = None,
    record: Annotated[list[str] | None, typer.Option(help="NAME=ADDRESS it answers itself; repeatable.")] = None,
) -> None:
    """Run a DNS server for dns.* faults with target.control: use it as the target's resolver."""
    from harness.chaos.dns_server import main as dns_main

    args = ["--listen", listen, "--control", control] + (["--upstream", upstream] if upstream else [])
    for item in record or []:
        args += ["--record", item]
    raise typer.Exit(code=dns_main(args))


def watchdog(
    journal_dir: Annotated[
        Path | None, typer.Option(help="Journal directory to watch (default: this node's journal).")
    ] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="Exit after this many seconds with no leased fault (default 30).")
    ] = None,
) -> None:
    """Revert faults whose lease lapsed (normally started by the chaos agent, detached)."""
    from harness.chaos.watchdog import main as watchdog_main

    args = (["--idle-exit", str(idle_exit)] if idle_exit is not None else []) + (
        ["--journal-dir", str(journal_dir)] if journal_dir else []
    )
    raise typer.Exit(code=watchdog_main(args))


def demo_up(
    base_port: Annotated[int, typer.Option(help="Gateway port; catalog, cart, payments follow.")] = 8700,
    restart_delay: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=600.0,
            help="Seconds the supervisor waits before restarting a dead service (a demo already up keeps its own).",
        ),
    ] = 3.0,
    catalog_instances: Annotated[
        int,
        typer.Option(
            min=1,
            max=4,
            help="Run catalog as this many instances, which the gateway calls round robin (retrying a refused "
            "connection once on the next); the further ones listen on the base port + 8, + 9, ...",
        ),
    ] = 1,
    clock_shim: Annotated[
        list[str] | None,
        typer.Option(
            help="Start this service (catalog, cart, payments, gateway) under harness's clock shim, so time.skew "
            "faults can move its wall clock; repeatable.",
        ),
    ] = None,
    breaker_failures: Annotated[
        int,
        typer.Option(
            min=0,
            max=1000,
            help="Failed calls to payments in a row that open the gateway's circuit breaker (0: none).",
        ),
    ] = 0,
    breaker_reset: Annotated[
        float,
        typer.Option(
            min=0.05, max=600.0, help="Seconds the gateway's circuit breaker stays open before one trial call."
        ),
    ] = 2.0,
) -> None:
    """Start the demo shop (idempotent)."""
    from harness.demo.breaker import BreakerSettings
    from harness.demo.control import SERVICE_NAMES, up
    from harness.demo.supervisor import catalog_replica_ports

    shims = tuple(dict.fromkeys(clock_shim or []))
    unknown = [name for name in shims if name not in SERVICE_NAMES or name == "proxy"]
    if unknown:
        raise ConfigError(f"--clock-shim: no demo service {', '.join(unknown)} (catalog, cart, payments, gateway)")
    breaker = BreakerSettings(failures=breaker_failures, reset=breaker_reset)
    info = up(
        base_port=base_port,
        restart_delay=restart_delay,
        clock_shims=shims,
        catalog_instances=catalog_instances,
        breaker=breaker,
    )
    typer.echo(f"demo shop up at {info.base_url} (supervisor pid {info.supervisor_pid}, state in {info.directory})")
    typer.echo(f"fault proxy in front of payments: 127.0.0.1:{base_port + 4}, control API 127.0.0.1:{base_port + 5}")
    if info.metrics_url is not None:
        typer.echo(
            f"metrics (Prometheus query API, for probes): {info.metrics_url}, scraping every service each second"
        )
    else:
        typer.echo("metrics: not started (apt-get install victoria-metrics for the demo's Prometheus query API)")
    net = info.payments_netns
    if net is not None:
        typer.echo(
            f"payments in network namespace {net.netns} at {net.payments_address}:{base_port + 3} "
            f"(veth {net.host_interface} <-> {net.netns_interface})"
        )
    elif info.note:
        typer.echo(info.note)
    if catalog_instances > 1:
        ports = ", ".join(str(p) for p in [base_port + 1, *catalog_replica_ports(base_port, catalog_instances)])
        typer.echo(f"catalog runs as {catalog_instances} instances on ports {ports}, round robin behind the gateway")
    for name in shims:
        typer.echo(f"{name} runs under the clock shim: skew file {info.directory / (name + '.faketime')}")
    _echo_metrics_and_breaker(info.base_url, breaker)


def _echo_metrics_and_breaker(base_url: str, breaker: BreakerSettings) -> None:
    typer.echo(f"Prometheus metrics: GET /metrics on each service's port (gateway {base_url}/metrics)")
    if breaker.enabled:
        typer.echo(
            f"gateway's circuit breaker on payments: opens after {breaker.failures} failed calls in a row, "
            f"tries again after {breaker.reset:g} s"
        )
    else:
        typer.echo("gateway's circuit breaker on payments: off (--breaker-failures 5 turns it on)")


def demo_down() -> None:
    """Stop the demo shop and its supervisor (idempotent)."""
    from harness.demo.control import down

    typer.echo("demo shop stopped" if down() else "demo shop was not running")


def demo_status() -> None:
    """Show the demo services' PIDs."""
    from harness.demo.control import status

    for name, pid in status().items():
        typer.echo(f"{name:10} {pid if pid else 'down'}")


def influx_start() -> None:
    """Start the embedded InfluxDB on 127.0.0.1:8086 if nothing answers there."""
    from harness.results.embedded import DEFAULT_URL, ensure_local_influx

    info = ensure_local_influx(DEFAULT_URL, paths.data_dir())
    if info is None:
        raise ConfigError("influxd is not installed (Debian package 'influxdb'); run 'make setup'")
    typer.echo(f"InfluxDB at {info.url}" + (f" (started, pid {info.pid})" if info.started else " (already running)"))


def influx_stop() -> None:
    """Stop the embedded InfluxDB if harness started it."""
    from harness.results.embedded import stop_local_influx

    typer.echo(
        "embedded InfluxDB stopped" if stop_local_influx(paths.data_dir()) else "embedded InfluxDB was not running"
    )
