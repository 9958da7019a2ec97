"""Checks of a request to the worker's server that do not depend on the endpoint.

- ``throttle_key``: whom the failure throttle counts: an IPv4 address, or an IPv6 /64 (one
  host usually holds a whole /64, so counting single IPv6 addresses would let it evade);
- ``foreign_host``: the ``Host`` a loopback-bound server refuses on its browser-reachable
  pages, so a web page that rebinds its own name to 127.0.0.1 cannot read them;
- ``UNREADABLE``: what reading a hostile request can raise (bytes that are not UTF-8, JSON
  nested past the recursion limit, a charset Python does not know, a body that does not
  decode as its ``Content-Encoding`` says): a 400, never a 500.
"""

from __future__ import annotations

import ipaddress

from aiohttp.web_protocol import RequestPayloadError

__all__ = ["HOST_CHECKED_PATHS", "UNREADABLE", "foreign_host", "throttle_key"]

UNREADABLE = (UnicodeError, RecursionError, LookupError, RequestPayloadError)

# Read by browsers, or taking work: what a rebound page could reach. Not /v1/webhooks/*: those
# arrive through a tunnel or proxy under a public name, and are signed.
HOST_CHECKED_PATHS = ("/status", "/status.json", "/v1/watch")


def throttle_key(address: str) -> str:
    """The IPv4 address as it is, an IPv6 address as its /64 (an IPv4-mapped one as IPv4)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # "unknown", a Unix socket: as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def foreign_host(host_header: str | None) -> str | None:
    """The name in ``Host`` when it is not a loopback name or address, else None.

    ``localhost``, ``127.0.0.1``, ``[::1]`` (any port) are this machine; any other name may
    be a page's own, rebound to 127.0.0.1 (DNS rebinding).
    """
    if not host_header:
        return None  # HTTP/1.0 without Host: no page in a browser sends that
    name = host_header.strip()
    if name.startswith("["):  # [::1]:9464
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    name = name.rstrip(".").lower()
    if name == "localhost":
        return None
    try:
        if ipaddress.ip_address(name).is_loopback:
            return None
    except ValueError:
        pass
    return host_header[:100]
