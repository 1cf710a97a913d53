"""Small stdlib HTTP helpers shared by the v1 writer, the query client and the embedded server.

Kept in one place so every request made by harness.results has an explicit timeout (urllib's
default is to wait forever), bypasses proxies for loopback addresses (an ``http_proxy`` set for
package downloads must not swallow requests to 127.0.0.1), and never lets a secret reach an
exception message.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import ipaddress
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping

__all__ = ["REDACTED", "http_request", "is_loopback_host", "redact", "split_userinfo"]

REDACTED = "***"

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback_host(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and the usual names of localhost."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """Split ``http://user:pass@host:port/path`` into the URL without credentials and the
    (username, password), so credentials travel in a header and never appear in a printed URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url.rstrip("/"), None, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    clean = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    username = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return clean.rstrip("/"), username, password


_BASE64_WORD = re.compile(r"[A-Za-z0-9+/]{12,}={0,2}")


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each non-empty secret (its URL-quoted forms, and any base64
    word that decodes to text holding it, such as ``Basic`` credentials a server echoes) with ***."""
    known: list[str] = [s for s in secrets if s]

    def unbasic(match: re.Match[str]) -> str:
        try:
            decoded = base64.b64decode(match[0], validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return match[0]
        return REDACTED if any(secret in decoded for secret in known) else match[0]

    if known:
        text = _BASE64_WORD.sub(unbasic, text)
    for secret in known:
        text = text.replace(secret, REDACTED)
        quoted = urllib.parse.quote(secret, safe="")
        if quoted != secret:
            text = text.replace(quoted, REDACTED)
        plus_quoted = urllib.parse.quote_plus(secret, safe="")
        if plus_quoted not in (secret, quoted):
            text = text.replace(plus_quoted, REDACTED)
    return text


def _opener(url: str) -> urllib.request.OpenerDirector:
    host = urllib.parse.urlsplit(url).hostname
    if is_loopback_host(host):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def http_request(
    method: str,
    url: str,
    *,
    timeout: float,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    """Make one request and return (status, body) for every HTTP status, including 4xx/5xx.

    Raises OSError (urllib.error.URLError, TimeoutError, ConnectionError) only when no HTTP
    answer came back at all, which callers treat as "server unreachable".
    """
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with _opener(url).open(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as err:
        try:
            payload = err.read()
        except OSError:
            payload = b""
        finally:
            err.close()
        return int(err.code), payload
    except http.client.HTTPException as err:
        # A broken answer (bad status line, connection closed mid-body) is as good as none.
        raise ConnectionError(f"{type(err).__name__}: {err}") from err
