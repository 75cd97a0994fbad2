"""The client for people's webhook endpoints: Standard Webhooks signing, one POST per attempt, SSRF checks.

Standard Webhooks (https://www.standardwebhooks.com): each request carries
``webhook-id`` (the delivery's id: the same on every retry, so a receiver
dedupes on it), ``webhook-timestamp`` (unix seconds, fresh per attempt) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``,
keyed by the base64-decoded part of the endpoint's ``whsec_`` secret. Bodies
are thin: the event's type, time, and ids and statuses, never a person's text.

A target is checked when it is added and again before every request (its DNS
may have changed since): http(s) only, and refused if its host resolves to any
private, loopback, link-local, multicast, reserved or unspecified address,
unless the host is in SOULPRINT_WEBHOOK_ALLOW_HOSTS. Redirects are not
followed (a public host could point at an internal one), every request has a
timeout, and neither secrets nor URLs (which may carry tokens) are logged.
The check and the request resolve the name separately, so a name that
rebinds in between is not caught; an allow-list of hosts is the stricter setup.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import random
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from soulprint.models.events import JobNotice
from soulprint.models.text import one_line
from soulprint.settings import WebhookConfig

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24


class TargetRefused(ValueError):
    """A webhook URL we will not send to (not http(s), unresolvable, or a private address)."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def notice_body(notice: JobNotice, public_url: str | None) -> str:
    """The body every endpoint gets for ``notice``, fixed once (the same bytes on every retry)."""
    data = dict(notice.data)
    if public_url and notice.job_id:
        data["status_url"] = f"{public_url}/v1/imports/{notice.job_id}"
    when = datetime.fromtimestamp(notice.created_at, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": notice.type, "timestamp": when, "data": data}, separators=(",", ":"),
                      sort_keys=True)


def backoff_s(attempt: int, config: WebhookConfig, rand: random.Random | None = None) -> float:
    """Full jitter: a random delay up to min(cap, base * 2^(attempt-1)), so failing endpoints'
    retries spread out instead of arriving together."""
    ceiling = min(config.retry_cap_s, config.retry_base_s * 2 ** max(0, attempt - 1))
    return (rand or random).uniform(0, ceiling)


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header (delay-seconds or an HTTP date) as seconds from now; None if absent or unreadable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _refused_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


async def check_target(url: str, allow_hosts: tuple[str, ...]) -> None:
    """TargetRefused unless ``url`` is http(s) and its host is allowed or resolves to public addresses only."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a URL: {one_line(exc)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("a webhook URL must be http:// or https:// with a host")
    host = parts.hostname.lower()
    if host in allow_hosts:
        return
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"cannot resolve {host}: {one_line(exc)}") from None
    refused = sorted({info[4][0] for info in found if _refused_address(info[4][0])})
    if refused or not found:
        raise TargetRefused(f"{host} resolves to a private or reserved address ({', '.join(refused) or 'none'});"
                            " add it to SOULPRINT_WEBHOOK_ALLOW_HOSTS to allow it")


@dataclass(frozen=True)
class Attempt:
    """What one POST got: the HTTP status (None: no answer), a Retry-After in seconds, or an error line."""

    status: int | None
    retry_after_s: float | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        return self.status == 410


class WebhookSender:
    """``async with WebhookSender(config) as sender: await sender.send(...)``: one HTTP client for a pass."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self._client = httpx.AsyncClient(timeout=config.timeout_s, follow_redirects=False, trust_env=False,
                                         headers={"user-agent": "soulprint-webhooks/1"})

    async def __aenter__(self) -> "WebhookSender":
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.aclose()

    async def send(self, url: str, secret: str, msg_id: str, body: str) -> Attempt:
        """One signed POST of ``body``; never raises for the endpoint's or the network's failures."""
        try:
            await check_target(url, self.config.allow_hosts)
        except TargetRefused as exc:
            return Attempt(None, error=f"refused: {exc}")
        timestamp = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": msg_id,
                   "webhook-timestamp": str(timestamp), "webhook-signature": sign(secret, msg_id, timestamp, body)}
        try:
            response = await self._client.post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            return Attempt(None, error=f"{type(exc).__name__}: {one_line(exc) or 'no answer'}")
        error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        return Attempt(response.status_code, retry_after_s(response.headers.get("retry-after")), error)
