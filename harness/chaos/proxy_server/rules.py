"""The fault proxy's HTTP rules (Chaos Mesh HTTPChaos parity): which requests a rule matches and
what it does to a share of them, validated from the control API's JSON and compiled once per
change into what the data path reads.

A rule matches by ``method`` (exact), ``path`` (a glob, ``*`` crossing ``/``) or ``path_regex``
(the whole path, query string excluded), ``host`` (a glob on the Host header, port excluded) and
``request_headers`` (name: glob on the value; every one must be present), plus, for a rule with
``target: Response``, the response's ``code``. A matching request is picked with probability
``percent``/100, drawn per request. The actions, applied in Chaos Mesh's order abort -> delay ->
replace -> patch:

* ``abort``: answer ``status`` (the request is never forwarded; with ``target: Response`` the
  upstream's response is dropped), or ``reset`` the client connection (TCP RST).
* ``delay``: hold the request (``Request``) or the response (``Response``) ``delay`` +/- ``jitter``.
* ``replace``: set the method, path, headers or body of the request; the code, headers or body
  of the response.
* ``patch``: add headers; merge a JSON object into the body (RFC 7386 JSON merge patch).

Nothing here does I/O: :mod:`.forward` calls :meth:`Rules.decide` per request head and the
edit functions on whole messages. The kind names are the control API's (:mod:`.spec`).
"""

from __future__ import annotations

import fnmatch
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_BODY",
    "REQUEST",
    "RESPONSE",
    "Decision",
    "Message",
    "ResponseEdit",
    "Rule",
    "Rules",
    "abort_response",
    "compile_rule",
    "edit_message",
    "validate_rule",
]

REQUEST, RESPONSE = "Request", "Response"
_MATCH = ("target", "method", "path", "path_regex", "host", "request_headers", "code", "percent")
#: Largest body a replace or patch buffers; a larger one passes unchanged.
MAX_BODY = 8 * 1024 * 1024
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PORT = re.compile(r":\d+$")


# ---------------------------------------------------------------- validation (the control API's edge)


def _text(spec: dict[str, Any], key: str, limit: int = 2000) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"'{key}' must be a non-empty string of at most {limit} characters, not {value!r}")
    return value


def _headers(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"'{key}' must be an object of header names to strings")
    for name, text in value.items():
        if not _TOKEN.match(name) or "\r" in text or "\n" in text:
            raise ValueError(f"'{key}': {name!r}: {text!r} is not a valid header")
    return dict(value)


def _status(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise ValueError(f"'{key}' must be an HTTP status from 100 to 599, not {value!r}")
    return value


def _seconds(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
        raise ValueError(f"'{key}' must be seconds from 0 to 3600, not {value!r}")
    return float(value)


def _edits(kind: str, value: Any, target: str) -> dict[str, Any]:
    """The ``replace`` or ``patch`` object of a rule, checked against the rule's target."""
    name = kind.rpartition(".")[2]
    allowed = {"headers", "body"} | (
        ({"method", "path"} if target == REQUEST else {"code"}) if name == "replace" else set()
    )
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if v is not None}
    if not isinstance(value, dict) or not value:
        raise ValueError(f"'{name}' must be an object with some of {', '.join(sorted(allowed))}")
    extra = set(value) - allowed
    if extra:
        raise ValueError(
            f"'{name}' of a {target} rule takes {', '.join(sorted(allowed))}, not {', '.join(sorted(extra))}"
        )
    out: dict[str, Any] = {}
    if value.get("headers"):
        out["headers"] = _headers(value["headers"], f"{name}.headers")
    if "body" in value and value["body"] is not None:
        body = value["body"]
        if name == "patch" and not isinstance(body, dict):
            raise ValueError("'patch.body' must be a JSON object (merged into the body as a JSON merge patch)")
        if name == "replace" and not isinstance(body, str):
            raise ValueError("'replace.body' must be a string")
        out["body"] = body
    if value.get("method") is not None:
        method = value["method"]
        if not isinstance(method, str) or not _TOKEN.match(method):
            raise ValueError(f"'replace.method' must be an HTTP method, not {method!r}")
        out["method"] = method.upper()
    path = _text(value, "path")
    if path is not None:
        if not path.startswith("/") or any(c in path for c in " \r\n"):
            raise ValueError(f"'replace.path' must start with / and hold no space, not {path!r}")
        out["path"] = path
    if value.get("code") is not None:
        out["code"] = _status(value["code"], "replace.code")
    if not out:
        raise ValueError(f"'{name}' changes nothing")
    return out


def validate_rule(kind: str, spec: dict[str, Any], actions: dict[str, set[str]]) -> dict[str, Any]:
    """The normalised rule of a PUT body whose kind is ``kind``; ``actions`` maps each HTTP kind to
    the keys it takes besides the match. ``ValueError`` says what is wrong."""
    spec = {k: v for k, v in spec.items() if v is not None}
    extra = set(spec) - set(_MATCH) - actions[kind] - {"kind"}
    if extra:
        raise ValueError(f"{kind} takes {', '.join(sorted([*_MATCH, *actions[kind]]))}, not {', '.join(sorted(extra))}")
    target = spec.get("target", REQUEST)
    if target not in (REQUEST, RESPONSE):
        raise ValueError(f"'target' must be Request or Response, not {target!r}")
    out: dict[str, Any] = {"kind": kind, "target": target}
    method = _text(spec, "method", 20)
    if method is not None:
        if not _TOKEN.match(method):
            raise ValueError(f"'method' must be an HTTP method, not {method!r}")
        out["method"] = method.upper()
    if "path" in spec and "path_regex" in spec:
        raise ValueError("give 'path' (a glob) or 'path_regex', not both")
    for key in ("path", "path_regex", "host"):
        text = _text(spec, key)
        if text is not None:
            out[key] = text
    if "path_regex" in out:
        try:
            re.compile(out["path_regex"])
        except re.error as exc:
            raise ValueError(f"'path_regex' is not a regular expression: {exc}") from None
    if spec.get("request_headers"):
        out["request_headers"] = {k.lower(): v for k, v in _headers(spec["request_headers"], "request_headers").items()}
    if "code" in spec:
        if target != RESPONSE:
            raise ValueError("'code' (the response's status) matches only in a rule with target Response")
        out["code"] = _status(spec["code"], "code")
    percent = spec.get("percent", 100)
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 < percent <= 100:
        raise ValueError(f"'percent' must be a number above 0 and at most 100, not {percent!r}")
    out["percent"] = float(percent)
    for key in sorted(actions[kind] & set(spec)):
        if key in ("status",):
            out[key] = _status(spec[key], key)
        elif key in ("delay", "jitter"):
            out[key] = _seconds(spec[key], key)
        elif key == "reset":
            if not isinstance(spec[key], bool):
                raise ValueError("'reset' is true, false or left out")
            if spec[key]:
                out[key] = True
        else:
            out[key] = _edits(kind, spec[key], target)
    return out


# ---------------------------------------------------------------- compiled rules and the per-request decision


def _glob(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), flags)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule as the data path reads it: patterns compiled, percent as a probability."""

    target: str
    method: bytes | None
    path: re.Pattern[str] | None
    host: re.Pattern[str] | None
    headers: tuple[tuple[re.Pattern[bytes], re.Pattern[str]], ...]  # (finds the header's value, glob on it)
    code: int | None
    chance: float
    status: int = 0
    reset: bool = False
    delay: float = 0.0
    jitter: float = 0.0
    replace: dict[str, Any] | None = None
    patch: dict[str, Any] | None = None

    def pause(self) -> float:
        return max(0.0, self.delay + random.uniform(-self.jitter, self.jitter)) if self.jitter else self.delay

    @property
    def body(self) -> bool:
        """True when the rule rewrites the body (so the whole body must be read first)."""
        return bool((self.replace or {}).get("body") is not None or (self.patch or {}).get("body") is not None)


def compile_rule(spec: dict[str, Any]) -> Rule:
    """A validated rule (:func:`validate_rule`) compiled for the data path."""
    path = spec.get("path")
    return Rule(
        target=spec["target"],
        method=spec["method"].encode() if "method" in spec else None,
        path=_glob(path) if path else (re.compile(f"(?:{spec['path_regex']})\\Z") if "path_regex" in spec else None),
        host=_glob(spec["host"], re.IGNORECASE) if "host" in spec else None,
        headers=tuple((_finder(name), _glob(value)) for name, value in spec.get("request_headers", {}).items()),
        code=spec.get("code"),
        chance=spec["percent"] / 100,
        status=spec.get("status", 0),
        reset=spec.get("reset", False),
        delay=spec.get("delay", 0.0),
        jitter=spec.get("jitter", 0.0),
        replace=spec.get("replace"),
        patch=spec.get("patch"),
    )


@dataclass(slots=True)
class ResponseEdit:
    """What happens to the response of one request: the response rules it matched."""

    method: bytes
    rules: list[Rule] = field(default_factory=list)

    def for_code(self, code: int) -> list[Rule]:
        return [rule for rule in self.rules if rule.code is None or rule.code == code]


@dataclass(slots=True)
class Decision:
    """The fate of one request under the rules that picked it (request side, then response side)."""

    status: int = 0
    reset: bool = False
    delay: float = 0.0
    edits: list[Rule] = field(default_factory=list)  # request replace/patch, in rule order
    body: bool = False  # an edit rewrites the request body
    response_delay: float = 0.0  # response held, nothing else done to it: no parsing needed
    response: ResponseEdit | None = None


def _finder(name: str) -> re.Pattern[bytes]:
    """Finds header ``name``'s value in a head: one search, not a parse of every header."""
    return re.compile(rb"\r\n" + re.escape(name.encode("latin-1")) + rb"[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


_HOST = _finder("host")


def _value(finder: re.Pattern[bytes], head: bytes) -> str | None:
    found = finder.search(head)
    return None if found is None else found.group(1).decode("latin-1").rstrip(" \t")


@dataclass(frozen=True, slots=True)
class Rules:
    """Every active rule, in the order they were put; what :class:`~.spec.Profile` holds."""

    rules: tuple[Rule, ...]

    @classmethod
    def of(cls, rules: list[Rule]) -> Rules:
        return cls(tuple(rules))

    def decide(self, head: bytes) -> Decision | None:
        """The fate of the request whose head (request line to blank line) is ``head``; None when no
        rule picked it. Cheap: the request line is split once, a header is looked up (one search)
        only for a rule that matches on it, patterns are compiled beforehand."""
        line = head[: head.find(b"\r\n")]
        method, _, rest = line.partition(b" ")
        path = rest.rpartition(b" ")[0].partition(b"?")[0].decode("latin-1")
        decision: Decision | None = None
        for rule in self.rules:
            if (rule.method is not None and rule.method != method) or (
                rule.path is not None and rule.path.match(path) is None
            ):
                continue
            if rule.host is not None and rule.host.match(_PORT.sub("", _value(_HOST, head) or "")) is None:
                continue
            if rule.headers and any(
                (value := _value(finder, head)) is None or glob.match(value) is None for finder, glob in rule.headers
            ):
                continue
            if rule.chance < 1.0 and random.random() >= rule.chance:
                continue
            decision = Decision() if decision is None else decision
            _pick(decision, rule, method)
        return decision


def _pick(decision: Decision, rule: Rule, method: bytes) -> None:
    """Add a picked rule's actions to the request's decision."""
    if rule.target == RESPONSE:
        if rule.code is None and not (rule.status or rule.reset or rule.replace or rule.patch):
            decision.response_delay += rule.pause()
            return
        if decision.response is None:
            decision.response = ResponseEdit(method)
        decision.response.rules.append(rule)
        return
    if rule.status or rule.reset:
        decision.status = decision.status or rule.status
        decision.reset = decision.reset or rule.reset
    decision.delay += rule.pause()
    if rule.replace or rule.patch:
        decision.edits.append(rule)
        decision.body = decision.body or rule.body


# ---------------------------------------------------------------- editing a whole message


@dataclass(slots=True)
class Message:
    """An HTTP/1.x message cut into its start line, header lines and body."""

    start: list[str]  # request: method, target, version; response: version, code, reason
    headers: list[tuple[str, str]]
    body: bytes

    @classmethod
    def parse(cls, head: bytes, body: bytes) -> Message:
        lines = head.decode("latin-1").split("\r\n")
        start = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers.append((name.strip(), value.strip()))
        return cls(start + [""] * (3 - len(start)), headers, body)

    def set(self, name: str, value: str) -> None:
        low = name.lower()
        self.headers = [(n, v) for n, v in self.headers if n.lower() != low] + [(name, value)]

    def encode(self, *, head_only: bool = False) -> bytes:
        """The message with its framing made ``Content-Length`` (chunked bodies were read whole);
        ``head_only``: the head alone, its framing headers as they were (the body streams after)."""
        if not head_only:
            framing = ("content-length", "transfer-encoding")
            self.headers = [(n, v) for n, v in self.headers if n.lower() not in framing]
            self.headers.append(("Content-Length", str(len(self.body))))
        lines = [" ".join(part for part in self.start if part)]
        lines += [f"{n}: {v}" for n, v in self.headers]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def _merge(target: Any, patch: dict[str, Any]) -> Any:
    """RFC 7386 JSON merge patch."""
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = _merge(out.get(key), value)
        else:
            out[key] = value
    return out


def edit_message(message: Message, rules: list[Rule], request: bool) -> Message:
    """Apply each rule's replace then patch to ``message``, in rule order; returns it."""
    for rule in rules:
        replace = rule.replace or {}
        if request:
            if "method" in replace:
                message.start[0] = replace["method"]
            if "path" in replace:
                query = message.start[1].partition("?")[2]
                message.start[1] = replace["path"] + (f"?{query}" if query and "?" not in replace["path"] else "")
        elif "code" in replace:
            message.start[1] = str(replace["code"])
            message.start[2] = _REASONS.get(replace["code"], "Fault")
        for name, value in replace.get("headers", {}).items():
            message.set(name, value)
        if "body" in replace:
            message.body = replace["body"].encode()
    for rule in rules:
        patch = rule.patch or {}
        message.headers += list(patch.get("headers", {}).items())
        if "body" in patch:
            try:
                current = json.loads(message.body) if message.body else None
            except ValueError:
                current = None
            message.body = json.dumps(_merge(current, patch["body"]), separators=(",", ":")).encode()
    return message


_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def abort_response(status: int, close: bool, why: str = "abort") -> bytes:
    """The proxy's own answer to an aborted request or response."""
    body = f"harness fault proxy: aborted with {status}\n".encode()
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Fault')}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nX-Harness-Fault: {why}\r\nConnection: {'close' if close else 'keep-alive'}"
        "\r\n\r\n"
    ).encode() + body
