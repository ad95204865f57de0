"""The client's IP address: the peer, or the ``X-Forwarded-For`` entry a trusted proxy added.

Walking ``X-Forwarded-For`` from the right, each address added by a trusted proxy is
skipped; the first address that is not a trusted proxy is the client. Entries further left
were written by the client itself and are never believed.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache


class ClientIp:
    def __init__(self, trusted_proxies: list[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)

    def __call__(self, peer: str, forwarded_for: str | None) -> str:
        if not self.networks or not forwarded_for or not self._trusted(peer):
            return peer
        for entry in reversed(forwarded_for.split(",")):
            entry = entry.strip()
            if not entry:
                continue
            if not self._trusted(entry):
                return entry
        return peer

    def _trusted(self, address: str) -> bool:
        ip = _parse(address)
        return ip is not None and any(ip in net for net in self.networks)


@lru_cache(maxsize=4096)
def _parse(address: str):
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None
