"""``harness grafana push``: create or update the InfluxDB datasource, a folder and every
dashboard through Grafana's HTTP API (Grafana 10 or newer, the ``/api`` endpoints).

What a caller may rely on:

* Idempotent: running it again updates what the first run created (the datasource by its uid
  ``harness-influxdb``, the folder by its uid, each dashboard by its uid with ``overwrite``);
  nothing is ever duplicated or deleted.
* Order: datasource, then folder, then dashboards (the dashboards refer to both).
* A datasource provisioned from a file is read-only in Grafana; push leaves it as it is.
* Secrets: the Grafana token travels only in the ``Authorization`` header; the InfluxDB token
  only in the datasource's ``secureJsonData`` (Grafana stores it encrypted and never returns
  it). Neither appears in a printed line or an error message.
* Every request has a 10 s timeout; an unreachable Grafana or an HTTP error stops the push
  with ``GrafanaError`` (exit 3) carrying the status and Grafana's ``message``.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ConfigError, GrafanaError
from harness.results._http import REDACTED, http_request, redact, split_userinfo

__all__ = [
    "DATASOURCE_NAME",
    "DATASOURCE_UID",
    "GrafanaClient",
    "GrafanaError",
    "PushSettings",
    "check_url",
    "datasource_body",
    "folder_uid",
    "push",
    "token_from_env",
]

DATASOURCE_UID = "harness-influxdb"
DATASOURCE_NAME = "harness-influxdb"
TIMEOUT_S = 10.0
_UID_ILLEGAL = re.compile(r"[^a-zA-Z0-9_-]+")
_UID_MAX = 40  # Grafana rejects longer uids


@dataclass(frozen=True)
class PushSettings:
    """Everything push needs, resolved from the command line and the environment."""

    url: str
    token: str = field(repr=False)
    influx_url: str
    database: str
    influx_token: str | None = field(default=None, repr=False)
    folder: str = "harness"
    timeout: float = TIMEOUT_S


def folder_uid(title: str) -> str:
    """The folder's uid derived from its title: Grafana's uid alphabet, at most 40 characters."""
    uid = _UID_ILLEGAL.sub("-", title.strip()).strip("-")[:_UID_MAX]
    if not uid:
        raise ConfigError(f"--folder {title!r}: needs at least one letter or digit")
    return uid


def token_from_env(name: str, option: str, what: str) -> str:
    """The secret in environment variable ``name``; ConfigError (exit 2) naming it when unset."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"{option} names {name}, but that environment variable is not set (export {what} in it)")
    return value


def check_url(url: str, option: str) -> str:
    """An http(s) URL without credentials (a password in a URL ends up printed or stored)."""
    clean, user, password = split_userinfo(url)
    parts = urllib.parse.urlsplit(clean)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{option} {clean}: expected an http:// or https:// URL")
    if user is not None or password is not None:
        raise ConfigError(f"{option} {clean}: remove the credentials from the URL; tokens come from the environment")
    return clean


def datasource_body(settings: PushSettings) -> dict[str, Any]:
    """The InfluxDB (InfluxQL) datasource as Grafana's POST/PUT /api/datasources expect it.

    The InfluxDB token, when given, is sent as a custom HTTP header that Grafana's proxy adds
    to every query: ``httpHeaderName1`` in jsonData, its value in secureJsonData.
    """
    # As grafana/provisioning/datasources: POST (Grafana's default for InfluxQL, no URL length
    # limit for long queries) and a 1 s minimum interval, the resolution harness writes at.
    json_data: dict[str, Any] = {
        "version": "InfluxQL",
        "dbName": settings.database,
        "httpMode": "POST",
        "timeInterval": "1s",
    }
    body: dict[str, Any] = {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": "influxdb",
        "access": "proxy",
        "url": settings.influx_url,
        "database": settings.database,  # read by Grafana versions before jsonData.dbName
        "basicAuth": False,
        "isDefault": False,
        "jsonData": json_data,
    }
    if settings.influx_token:
        json_data["httpHeaderName1"] = "Authorization"
        body["secureJsonData"] = {"httpHeaderValue1": f"Token {settings.influx_token}"}
    return body


class GrafanaClient:
    """JSON over Grafana's HTTP API with a service account token (``Authorization: Bearer``)."""

    def __init__(
        self, url: str, token: str, *, timeout: float = TIMEOUT_S, secrets: tuple[str | None, ...] = ()
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._token = token
        self._secrets = (token, *secrets)

    def __repr__(self) -> str:
        return f"GrafanaClient(url={self.url!r}, token={REDACTED!r})"

    def call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, what: str, ok_404: bool = False
    ) -> tuple[int, dict[str, Any]]:
        """One request; returns (status, JSON document). Raises GrafanaError for no answer or an
        HTTP status >= 400 (except 404 when ``ok_404``), naming ``what`` and Grafana's message."""
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            status, raw = http_request(method, f"{self.url}{path}", body=payload, headers=headers, timeout=self.timeout)
        except OSError as err:
            reason = self._redact(str(getattr(err, "reason", None) or err))
            raise GrafanaError(f"Grafana {self.url} unreachable ({method} {path}): {reason}") from None
        text = raw.decode("utf-8", "replace")
        try:
            document = json.loads(text) if text.strip() else {}
        except ValueError:
            document = {}
        if not isinstance(document, dict):
            document = {"items": document}
        if status == 404 and ok_404:
            return status, document
        if status >= 400:
            message = self._redact(str(document.get("message") or text.strip()[:300] or "(no message)"))
            raise GrafanaError(f"Grafana {self.url}: {what}: {method} {path}: HTTP {status}: {message}")
        return status, document

    def _redact(self, text: str) -> str:
        # Only what comes from outside (Grafana's message, the OS error) can carry a secret: the
        # URL has no credentials (check_url) and the rest is ours, which a short token would mangle.
        return redact(text, self._secrets)


def push(
    settings: PushSettings,
    dashboards: Mapping[str, Mapping[str, Any]],
    say: Callable[[str], None],
) -> list[str]:
    """Create or update the datasource, the folder and ``dashboards`` (file name -> dashboard
    JSON model); print one line per object with ``say``. Returns the dashboard URLs."""
    for name, model in dashboards.items():
        if not model.get("uid") or not model.get("title"):
            raise GrafanaError(f"dashboard {name}: the model has no uid or no title; nothing was pushed")
    client = GrafanaClient(settings.url, settings.token, timeout=settings.timeout, secrets=(settings.influx_token,))
    _push_datasource(client, settings, say)
    uid = _push_folder(client, settings.folder, say)
    urls = []
    for name in sorted(dashboards):
        urls.append(_push_dashboard(client, name, dashboards[name], uid, say))
    return urls


def _push_datasource(client: GrafanaClient, settings: PushSettings, say: Callable[[str], None]) -> None:
    path = f"/api/datasources/uid/{DATASOURCE_UID}"
    what = f"datasource {DATASOURCE_UID}"
    status, existing = client.call("GET", path, what=what, ok_404=True)
    body = datasource_body(settings)
    if status == 404:
        client.call("POST", "/api/datasources", body, what=what)
        say(f"datasource {DATASOURCE_UID}: created (influxdb, InfluxQL, {settings.influx_url}, db {settings.database})")
    elif existing.get("readOnly"):
        # Provisioned from a file: Grafana refuses changes through the API (403), and the file wins.
        say(f"datasource {DATASOURCE_UID}: provisioned from a file (read-only in Grafana), left as it is")
    else:
        client.call("PUT", path, body, what=what)
        say(f"datasource {DATASOURCE_UID}: updated (influxdb, InfluxQL, {settings.influx_url}, db {settings.database})")


def _push_folder(client: GrafanaClient, title: str, say: Callable[[str], None]) -> str:
    uid = folder_uid(title)
    what = f"folder {title}"
    status, _ = client.call("GET", f"/api/folders/{urllib.parse.quote(uid, safe='')}", what=what, ok_404=True)
    if status == 404:
        client.call("POST", "/api/folders", {"uid": uid, "title": title}, what=what)
        say(f"folder {title}: created (uid {uid})")
    else:
        say(f"folder {title}: exists (uid {uid})")
    return uid


def _push_dashboard(
    client: GrafanaClient, name: str, model: Mapping[str, Any], folder: str, say: Callable[[str], None]
) -> str:
    # The uid is the dashboard's identity across Grafana servers; a numeric id from elsewhere
    # would make Grafana look for a dashboard that does not exist here (404).
    dashboard = {**model, "id": None}
    body = {"dashboard": dashboard, "folderUid": folder, "overwrite": True, "message": "harness push"}
    _, answer = client.call("POST", "/api/dashboards/db", body, what=f"dashboard {model['uid']} ({name})")
    version = answer.get("version")
    verb = "created" if version == 1 else "updated"
    url = urllib.parse.urljoin(client.url + "/", str(answer.get("url") or f"/d/{model['uid']}"))
    say(f"dashboard {answer.get('uid', model['uid'])}: {verb} (version {version}): {url}")
    return url
