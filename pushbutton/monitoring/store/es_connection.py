"""How pushbutton reaches an Elasticsearch cluster: a URL, or the fields of an Airflow Connection.

URL (``PUSHBUTTON_MONITORING_URL``, or an Airflow Connection's ``extra.url``)::

    elasticsearch+https://USER:PASSWORD@es1.example:9200[,es2.example:9200][?OPTION=VALUE&...]
    elasticsearch+http://localhost:9200              # elasticsearch:// means https

Airflow Connection (``ElasticsearchStore.from_connection``): ``host`` (a name or ``https://name:9200``;
several comma-separated), ``port`` (default 9200), ``schema`` (``https``, the default, or ``http``),
``login``/``password`` (basic authentication) and ``extra`` — any OPTION below, notably ``api_key``
(the base64 "encoded" key Kibana shows, or ``id:key``) instead of login/password.

OPTIONs (``EsSettings``; an unknown one is an error naming it): ``api_key``, ``verify_certs``
(default true), ``ca_certs`` (a PEM file), ``request_timeout`` (s, 30), ``retention_days`` (the
default ILM delete phase, 30), ``refresh`` (``false``: writes are searchable after the index's refresh
interval, 1 s; ``wait_for``: each write waits for it — read-your-writes, slower ingestion),
``max_rows`` (the most rows one ``rows()`` call reads, 2,000,000), ``page_size`` (hits per search
page, ≤ 10,000), ``bulk_docs`` (documents per bulk request, 2,000), ``max_retries``/``backoff_s``/
``max_backoff_s`` (retries of 429/502/503/504 answers and unreachable nodes, with exponential
backoff), ``bootstrap`` (true: create the ILM policy, templates and indices of deploy/elasticsearch
on first use; false: an operator applied them, the writer needs fewer privileges).

Secrets (password, api_key) are ``SecretStr``: never in ``repr``, logs or error messages; ``redacted``
is the URL with them masked (what ``store.url`` shows).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from pushbutton.monitoring.store.base import StoreError

SCHEMES = {"elasticsearch+https": "https", "elasticsearch+http": "http", "elasticsearch": "https"}
DEFAULT_PORT = 9200


class EsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hosts: list[str] = Field(min_length=1)  # scheme://host:port, without credentials
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = None
    verify_certs: bool = True
    ca_certs: str | None = None
    request_timeout: float = Field(30.0, gt=0)
    retention_days: int = Field(30, ge=1, le=3650)
    refresh: Literal["false", "wait_for"] = "false"
    max_rows: int = Field(2_000_000, ge=1)
    page_size: int = Field(10_000, ge=1, le=10_000)
    bulk_docs: int = Field(2_000, ge=1, le=100_000)
    max_retries: int = Field(4, ge=0, le=20)
    backoff_s: float = Field(0.25, ge=0)
    max_backoff_s: float = Field(4.0, ge=0)
    bootstrap: bool = True

    @property
    def redacted(self) -> str:
        scheme = self.hosts[0].split("://", 1)[0]
        hosts = ",".join(h.split("://", 1)[1] for h in self.hosts)
        user = f"{self.username}:***@" if self.username and self.password else ""
        key = "?api_key=***" if self.api_key else ""
        return f"elasticsearch+{scheme}://{user}{hosts}{key}"

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments of ``elasticsearch.Elasticsearch`` (its own retries off: the store retries)."""
        kwargs: dict[str, Any] = {
            "hosts": list(self.hosts),
            "verify_certs": self.verify_certs,
            "request_timeout": self.request_timeout,
            "max_retries": 0,
            "retry_on_status": (),
            "retry_on_timeout": False,
        }
        if self.ca_certs:
            kwargs["ca_certs"] = self.ca_certs
        if self.api_key is not None:
            key = self.api_key.get_secret_value()
            kwargs["api_key"] = tuple(key.split(":", 1)) if ":" in key else key
        elif self.username:
            kwargs["basic_auth"] = (self.username, self.password.get_secret_value() if self.password else "")
        return kwargs


def _settings(values: dict[str, Any], where: str) -> EsSettings:
    try:
        return EsSettings(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "connection"
            if error["type"] == "extra_forbidden":
                known = ", ".join(
                    n for n in EsSettings.model_fields if n not in ("hosts", "username", "password")
                )
                problems.append(f"{field}: unknown option (fix: remove it; known: {known})")
            else:
                problems.append(f"{field}: {error['msg']} (fix: correct the value)")
        raise StoreError(f"{where}: " + "; ".join(problems)) from None


def _hosts(netloc: str, scheme: str, where: str) -> list[str]:
    hosts = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            continue
        if "://" in part:
            scheme, part = part.split("://", 1)
        host, _, port = part.rstrip("/").partition(":")
        if not host or (port and not port.isdigit()):
            raise StoreError(f"{where}: host {part!r} is not host[:port] (fix: e.g. es.example:9200)")
        hosts.append(f"{scheme}://{host}:{port or DEFAULT_PORT}")
    if not hosts:
        raise StoreError(f"{where}: no host (fix: elasticsearch+https://host:9200)")
    return hosts


def from_url(url: str) -> EsSettings:
    """Settings from ``elasticsearch+https://user:password@host:port?option=value``."""
    where = "monitoring store URL"
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise StoreError(
            f"{where}: scheme {scheme!r} is not one of {', '.join(SCHEMES)} (fix: elasticsearch+https://…)"
        )
    parts = urlsplit("http://" + rest)
    if parts.path not in ("", "/"):
        raise StoreError(f"{where}: a path ({parts.path}) is not supported (fix: remove it)")
    userinfo, _, netloc = rest.split("?", 1)[0].rstrip("/").rpartition("@")
    values: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
    values["hosts"] = _hosts(netloc, SCHEMES[scheme], where)
    if userinfo:
        user, _, password = userinfo.partition(":")
        values["username"], values["password"] = unquote(user), unquote(password) or None
    return _settings(values, where)


def from_connection(
    host: str | None,
    login: str | None = None,
    password: str | None = None,
    extra: dict[str, Any] | None = None,
    *,
    port: int | None = None,
    schema: str | None = None,
) -> EsSettings:
    """Settings from an Airflow Connection's fields (see the module docstring)."""
    where = "Airflow connection (Elasticsearch)"
    options = dict(extra or {})
    if "url" in options:
        base = from_url(str(options.pop("url")))
        values = base.model_dump()
        values.update({k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in values.items()})
    else:
        if not host:
            raise StoreError(f"{where}: host: missing (fix: set the connection's host, e.g. es.example)")
        scheme = (schema or options.pop("scheme", None) or "https").lower()
        if scheme not in ("http", "https"):
            raise StoreError(f"{where}: schema: {scheme!r} is not http or https (fix: set it to https)")
        netloc = host
        if port is not None and "," not in host:  # the Connection's port field names the port
            if "://" in host:
                scheme, host = host.split("://", 1)
            netloc = f"{host.split(':')[0].rstrip('/')}:{port}"
        values = {"hosts": _hosts(netloc, scheme, where)}
    if login:
        values["username"], values["password"] = login, password
    values.update(options)
    return _settings(values, where)
