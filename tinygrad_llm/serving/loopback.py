"""Is a host name this machine's loopback interface? The server warns before listening anywhere else, and the
load generator refuses to aim at anything else: a benchmark that floods a network address is an attack."""
from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """True for "localhost" and loopback addresses (127.0.0.0/8, ::1); False for every other name or address.

    Names other than "localhost" are not resolved: what a name points at can change between the check and
    the connection, so only a literal loopback address (or "localhost") counts.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
