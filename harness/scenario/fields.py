"""Field types shared by the scenario's models: durations, percents, names, networks, labels, node selectors."""

from __future__ import annotations

import ipaddress
import math
import posixpath
import re
import signal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from harness.scenario.expressions import (
    parse_duration,
    parse_percent,
)

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}),
]


Percent = Annotated[
    float,
    BeforeValidator(parse_percent),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "string"}]}),
]


AsText = WithJsonSchema({"type": "string"})  # parsed from a short string; editors should expect one


Name = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _label_key(value: str) -> str:
    """Kubernetes label syntax, which Ray's labels follow: [dns-prefix/]name."""
    if len(value) > 317 or not re.fullmatch(_LABEL_KEY, value):
        raise ValueError(
            f"'{value}' is not a label key: an optional lower-case DNS prefix and '/', then up to 63 letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit (e.g. harness.io/host)"
        )
    return value


def _label_value(value: Any) -> Any:
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, int | float):
        value = str(value)
    if isinstance(value, str) and not re.fullmatch(_LABEL_VALUE, value):
        raise ValueError(
            f"'{value}' is not a label value: up to 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return value


LabelKey = Annotated[str, AfterValidator(_label_key)]


LabelValue = Annotated[str, BeforeValidator(_label_value)]


class NodeSelector(Model):
    """Which Ray nodes: those started with these labels, or those declaring a custom resource.

    Labels are what ``ray start --labels`` and KubeRay's ``rayStartParams`` set (the files in
    ``ray_cluster/`` give every node ``harness.io/host`` and ``harness.io/role``); a custom
    resource (``ray start --resources``) works on clusters that predate labels.
    """

    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        max_length=32,
        description="Node labels that must all match, e.g. {harness.io/host: db-1}.",
    )
    resource: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/-]+$")] | None = Field(
        default=None, description="A custom resource the node declares (ray start --resources), e.g. db-1."
    )

    def describe(self) -> str:
        if self.resource is not None:
            return f"resource {self.resource}"
        return "labels " + ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))


def regex(value: str) -> str:
    """A pattern that compiles; checked here so a typo is not a fault that fails mid-run."""
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


def signal_number(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a signal name such as SIGKILL or a number")
    if isinstance(value, int):
        if value not in {s.value for s in signal.Signals}:
            raise ValueError(f"{value} is not a signal number on this platform")
        return value
    if isinstance(value, str):
        name = value.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        try:
            return int(signal.Signals[name])
        except KeyError:
            raise ValueError(f"unknown signal '{value}'") from None
    raise ValueError("expected a signal name such as SIGKILL or a number")


# Kubernetes object names: a namespace is a DNS-1123 label, a deployment a DNS-1123 subdomain.
KubeNamespace = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]


KubeObjectName = Annotated[
    str,
    Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
]


_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"


_LABEL_KEY = rf"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}"


_LABEL_VALUE = rf"({_LABEL_NAME})?"


_EXISTS = re.compile(rf"^!?\s*{_LABEL_KEY}$")


_EQUALITY = re.compile(rf"^{_LABEL_KEY}\s*(==|=|!=)\s*{_LABEL_VALUE}$")


_SET = re.compile(rf"^{_LABEL_KEY}\s+(in|notin)\s*\((?P<values>[^()]*)\)$")


_VALUE = re.compile(rf"^{_LABEL_VALUE}$")


def split_label_selector(selector: str) -> list[str]:
    """The requirements of a label selector: split on commas outside parentheses, stripped."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, char in enumerate(selector):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(selector[start:i].strip())
            start = i + 1
    parts.append(selector[start:].strip())
    return parts


def label_selector(value: str) -> str:
    """Check a label selector in the syntax the API server takes; the string is passed on as written.

    Supported requirements, comma-separated (all must hold): ``key=value`` (or ``==``),
    ``key!=value``, ``key in (a,b)``, ``key notin (a,b)``, ``key`` (exists), ``!key``.
    Checked here so a typo is a located scenario error, not a 400 from the cluster mid-run.
    An empty selector (every pod in the namespace) is refused on purpose.
    """
    if not value.strip():
        raise ValueError("an empty selector would match every pod in the namespace; name at least one label")
    if value.count("(") != value.count(")"):
        raise ValueError(f"unbalanced parentheses in selector '{value}'")
    for requirement in split_label_selector(value):
        if not requirement:
            raise ValueError(f"empty requirement in selector '{value}' (two commas, or a trailing comma)")
        if _EXISTS.match(requirement) or _EQUALITY.match(requirement):
            continue
        match = _SET.match(requirement)
        if match is None:
            raise ValueError(
                f"'{requirement}' is not a label requirement; use key=value, key!=value, "
                "key in (a,b), key notin (a,b), key or !key"
            )
        values = [v.strip() for v in match["values"].split(",")]
        if not values or not all(v and _VALUE.match(v) for v in values):
            raise ValueError(f"'{requirement}': the set needs one or more valid label values")
    return value


BYTE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2}
BYTE_UNITS |= {"g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4, "tb": 1000**4, "tib": 1024**4}


_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_bytes(value: Any) -> int:
    """``256M``/``256MiB`` (binary), ``256MB`` (decimal) or a plain integer of bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 256M or a number of bytes")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _BYTES.match(value)
        if match and match[2].lower() in BYTE_UNITS:
            size = float(match[1]) * BYTE_UNITS[match[2].lower()]
            if not size < 2**63:  # inf too: int() of it would raise OverflowError
                raise ValueError(f"'{value}' is larger than any file system or memory")
            return int(size)
    raise ValueError(f"'{value}' is not a size; use e.g. 256M, 1GiB, 500MB or a number of bytes")


#: A size in bytes, written 256M, 1GiB, 500MB or as a number.
Bytes = Annotated[int, BeforeValidator(parse_bytes), WithJsonSchema({"type": ["integer", "string"]})]


#: A network namespace name as ``ip netns`` makes them (a file under /run/netns).
NetnsName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


#: A Linux interface name (IFNAMSIZ is 16 with the terminating NUL).
IfName = Annotated[str, Field(min_length=1, max_length=15, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")]


def cidr(value: str) -> str:
    """A peer network in CIDR notation (a bare address is a /32 or /128), normalised."""

    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(f"'{value}' is not an IPv4/IPv6 address or CIDR such as 10.0.0.0/24") from None


Cidr = Annotated[str, AfterValidator(cidr)]


Port = Annotated[int, Field(ge=1, le=65535)]


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)?\s*$", re.IGNORECASE)


_RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}


def rate_bits(value: Any) -> int:
    """Bits per second from ``1mbit``, ``500kbit``, ``2mbps`` (bytes/s, as tc spells it) or a number of bit/s."""
    if isinstance(value, bool):
        raise ValueError("expected a rate such as 1mbit")
    if isinstance(value, int | float):
        bits = float(value) if abs(value) < 1e300 else math.inf  # a huge int does not fit a float
    else:
        match = _RATE.match(str(value))
        if match is None:
            raise ValueError(f"'{value}' is not a rate; use e.g. 1mbit, 500kbit, 10mbps (bytes/s) or bits/s")
        bits = float(match[1]) * _RATE_UNITS[(match[2] or "bit").lower()]
    if not 8_000 <= bits <= 32e9:  # NaN too
        raise ValueError("rate must be between 8kbit and 32gbit")
    return int(bits)


def _host_port(value: Any) -> str:
    """``host:port`` (IPv6 as ``[::1]:port``), checked and normalised."""

    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or len(port) > 5 or not 1 <= int(port) <= 65535:
        raise ValueError(f"'{value}' is not host:port, e.g. 127.0.0.1:8700")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"'{value}': the host must be an IP address, e.g. 127.0.0.1:8700") from None
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


HostPort = Annotated[str, BeforeValidator(_host_port), AsText]


def absolute_dir(value: str) -> str:
    """An absolute directory, normalised lexically (``/tmp/`` and ``/tmp/x/..`` are ``/tmp``)."""
    if not value.startswith("/"):
        raise ValueError(f"'{value}' is not an absolute path such as /tmp or /srv/scratch")
    return posixpath.normpath(value).replace("//", "/", 1)  # normpath keeps a leading '//' (POSIX)


AbsoluteDir = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(absolute_dir)]


KeyPath = tuple[str | int, ...]
