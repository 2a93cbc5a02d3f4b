"""Webhook target safety (docs/webhooks.md): https only, never a private address.

Checked at registration and again at every attempt against the resolved IP; the attempt then
connects to that checked IP (so a DNS answer cannot change between check and connect).
``CLOSERDESK_WEBHOOK_ALLOW_PRIVATE_TARGETS=true`` lifts both rules for local development.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class TargetNotAllowed(Exception):
    """The URL may not receive webhooks; the message says why."""


@dataclass(frozen=True)
class ResolvedTarget:
    """Where to connect: ``url`` (host replaced by the checked IP when pinned), and the
    original ``host`` for the Host header and TLS server name."""

    url: str
    host: str
    pinned: bool


def ip_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Public unicast only: no private, loopback, link-local, multicast, CGNAT, reserved,
    unspecified, or IPv4-mapped/translated/6to4 forms of those."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return ip_allowed(embedded)
        if address in ipaddress.ip_network("64:ff9b::/96"):  # NAT64 of an IPv4 address
            return ip_allowed(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
        or not address.is_global
    )


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


async def _addresses(host: str, port: int) -> list[Address]:
    """The IPs ``host`` stands for: itself when a literal, else what DNS answers."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetNotAllowed(f"the target host does not resolve: {exc}") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise TargetNotAllowed("the target host does not resolve")
    return addresses


def _describe(address: Address) -> str:
    """``::ffff:a00:1 (IPv4 10.0.0.1)`` for IPv6 forms that embed an IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return f"{address} (IPv4 {embedded})"
    return str(address)


def check_url_shape(url: str, *, allow_private: bool) -> None:
    """Scheme and form. Raises ``TargetNotAllowed`` (also for a URL that does not parse: a
    broken IPv6 literal, a port out of range, spaces in the host)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a bad port
        hostname = parts.hostname
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise TargetNotAllowed(f"the target URL is not valid ({exc})") from exc
    allowed_schemes = {"https", "http"} if allow_private else {"https"}
    if parts.scheme not in allowed_schemes:
        raise TargetNotAllowed("webhook targets must use https")
    if not hostname:
        raise TargetNotAllowed("the target URL has no host")
    if any(c.isspace() for c in hostname):
        raise TargetNotAllowed("the target URL is not valid (spaces in the host)")
    if parts.username or parts.password:
        raise TargetNotAllowed("credentials in the target URL are not allowed")


async def resolve_target(url: str, *, allow_private: bool) -> ResolvedTarget:
    """Check ``url`` and pin it to a checked IP. Raises ``TargetNotAllowed``.

    Every address the name resolves to must be public (a name that also points inside is
    refused); the first one is used.
    """
    check_url_shape(url, allow_private=allow_private)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if allow_private:
        return ResolvedTarget(url, host, pinned=False)
    addresses = await _addresses(host, parts.port or 443)
    for address in addresses:
        if not ip_allowed(address):
            raise TargetNotAllowed(
                f"the target resolves to {_describe(address)}, a private or reserved address"
            )
    first = addresses[0]
    netloc_host = f"[{first}]" if first.version == 6 else str(first)
    netloc = netloc_host + (f":{parts.port}" if parts.port else "")
    pinned = parts._replace(netloc=netloc).geturl()
    return ResolvedTarget(pinned, host, pinned=True)
