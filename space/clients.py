"""Who a request comes from: the unit the app's fairness caps count (jobs, reads, device time).

One person can open many sessions (every gradio_client call without a session is a new one), so
the caps count *clients*, not sessions. A client is, in this order:

1. the signed-in Hugging Face user: Gradio's OAuth login (`request.username`, confirmed by the
   Hub's login flow), or a token sent as ``Authorization: Bearer`` / ``X-HF-Authorization`` once
   the Hub has confirmed whose it is (`whoami`; answers are cached, lookups are few at a time and
   time-limited, and an unconfirmed token counts for nothing);
2. else the visitor's address. Behind a front proxy (a Space), the address is taken from
   ``X-Forwarded-For``: the proxy appends the address it saw, so the right-most entry that is
   not an internal address (loopback, private, link-local, carrier NAT) is the one the proxy
   vouches for; entries further left are whatever the visitor wrote and are ignored. Without a
   proxy (``trusted_proxy_hops`` 0, the local app) the header is ignored and the socket peer
   counts, since any caller can write the header;
3. IPv6 addresses count per /64 (one subscriber usually holds a whole /64), IPv4-mapped IPv6
   addresses as their IPv4 address.

People behind one NAT share an address and so share a client; the caps are sized for that and a
refusal suggests signing in, which makes each person a client of their own.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import ipaddress
import threading
import time
from typing import Callable

_INTERNAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "0.0.0.0/8", "::1/128", "fc00::/7", "fe80::/10", "::/128"))
TOKEN_HEADERS = ("x-hf-authorization", "authorization")


@dataclasses.dataclass(frozen=True)
class Client:
    """The party a request counts against."""

    key: str
    """"user:<name>" or "addr:<address or IPv6 /64>"; never used in a path."""
    signed_in: bool

    @property
    def described(self) -> str:
        """How a message names it: "your account alice" or "your network address"."""
        return f"your account {self.key[5:]}" if self.signed_in else "your network address"


def _ip(text: str):
    try:
        address = ipaddress.ip_address(text.strip().strip("[]").split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _internal(address) -> bool:
    return any(address in network for network in _INTERNAL_NETWORKS if network.version == address.version)


def address_key(address) -> str:
    """The client key of an address: IPv4 as is, IPv6 by its /64."""
    if isinstance(address, ipaddress.IPv6Address):
        return f"addr:{ipaddress.ip_network(f'{address}/64', strict=False)}"
    return f"addr:{address}"


def forwarded_address(header: str | None, peer: str | None, trusted_proxy_hops: int):
    """The visitor's address: from X-Forwarded-For behind `trusted_proxy_hops` proxies, else the peer.

    The header is read right to left: the last `trusted_proxy_hops` entries were written by
    proxies this app trusts; of those, the right-most non-internal one is the visitor (internal
    entries are the proxies' own hops). Entries left of them are the visitor's own words."""
    if trusted_proxy_hops > 0 and header:
        entries = [e for e in header.split(",") if e.strip()][-trusted_proxy_hops:]
        for entry in reversed(entries):
            address = _ip(entry)
            if address is not None and not _internal(address):
                return address
    return _ip(peer or "") if peer else None


def _header(request, name: str) -> str | None:
    headers = getattr(request, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get(name)
    except Exception:  # a mapping of an unexpected kind
        return None
    return value if isinstance(value, str) else None


def bearer_token(request) -> str | None:
    """The Hugging Face token a request carries (``X-HF-Authorization`` or ``Authorization``)."""
    for name in TOKEN_HEADERS:
        value = _header(request, name)
        if value and value[:7].lower() == "bearer ":
            token = value[7:].strip()
            if 8 <= len(token) <= 512:
                return token
    return None


class ConfirmedTokens:
    """Whose a token is, as the Hub says: cached, a few lookups at a time, each time-limited.

    `lookup(token)` is the Hub's answer (a user name, or None for an invalid token); it is only
    called when no answer is cached and fewer than `max_lookups` are running, so a flood of made-up
    tokens costs at most that many Hub calls at once and each one once per `ttl` seconds."""

    def __init__(self, lookup: Callable[[str], str | None], *, ttl: float = 600.0, max_entries: int = 4096,
                 max_lookups: int = 2):
        self._lookup = lookup
        self.ttl, self.max_entries = ttl, max_entries
        self._answers: collections.OrderedDict[str, tuple[str | None, float]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._lookups = threading.BoundedSemaphore(max_lookups)

    def user(self, token: str) -> str | None:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._answers.get(digest)
            if cached is not None and cached[1] > now:
                return cached[0]
        if not self._lookups.acquire(blocking=False):
            return None  # the Hub is being asked enough already: count the address this time
        try:
            try:
                name = self._lookup(token)
            except Exception:  # the Hub is unreachable or answered oddly: not confirmed
                return None
            name = name if isinstance(name, str) and 0 < len(name) <= 96 else None
        finally:
            self._lookups.release()
        with self._lock:
            self._answers[digest] = (name, now + self.ttl)
            self._answers.move_to_end(digest)
            while len(self._answers) > self.max_entries:
                self._answers.popitem(last=False)
        return name


class ClientResolver:
    """Turns a gr.Request into the Client the caps count."""

    def __init__(self, *, trusted_proxy_hops: int = 0, tokens: ConfirmedTokens | None = None):
        self.trusted_proxy_hops = trusted_proxy_hops
        self.tokens = tokens

    def __call__(self, request) -> Client:
        username = getattr(request, "username", None) if request is not None else None
        if isinstance(username, str) and username:
            return Client(f"user:{username}", True)
        token = bearer_token(request) if request is not None and self.tokens is not None else None
        if token is not None:
            name = self.tokens.user(token)
            if name:
                return Client(f"user:{name}", True)
        peer = getattr(getattr(request, "client", None), "host", None) if request is not None else None
        address = forwarded_address(_header(request, "x-forwarded-for") if request is not None else None,
                                    peer if isinstance(peer, str) else None, self.trusted_proxy_hops)
        if address is None:
            return Client("addr:unknown", False)
        return Client(address_key(address), False)
