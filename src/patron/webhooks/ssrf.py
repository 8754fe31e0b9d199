"""Where a webhook may point: SSRF checks at registration and again at every send.

A webhook URL is chosen by whoever holds an admin key, and Patron POSTs to it from inside the
operator's network, so an unchecked URL would let that person reach the metadata service
(169.254.169.254), the database port on localhost or anything on the private network. Two checks:

- `check_url` when an endpoint is created or changed: http/https only, a host, no user:password,
  at most 500 characters, and every address the host resolves to must be public.
- `pinned_address` just before each send: the name is resolved again and the address that passed
  the check is the one the sender connects to (with the Host header and TLS server name kept), so
  a DNS answer that changes between the check and the connection (DNS rebinding) cannot send the
  request elsewhere.

`allow_private=True` (Settings.webhook_allow_private) turns the address checks off, for
development and tests against a receiver on loopback; the URL shape is still checked.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

from patron.errors import Invalid

MAX_URL_LENGTH = 500
SCHEMES = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 ranges that carry an IPv4 address a gateway may forward to (NAT64, RFC 6052 / 8215).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class RefusedAddress(Exception):
    """The host resolves to an address webhooks may not reach (or to none)."""


class Unresolvable(RefusedAddress):
    """The host does not resolve (now): at send time, worth another try later."""


@dataclass(frozen=True)
class Target:
    """A checked URL taken apart: what the sender needs to connect to a pinned address."""

    url: str  # normalised
    scheme: str
    host: str  # lower-case, IDNA (ASCII); an IPv6 literal without brackets
    port: int  # explicit or the scheme's default
    explicit_port: bool


class InvalidUrl(Invalid):
    code = "invalid_url"


def _invalid(detail: str) -> InvalidUrl:
    return InvalidUrl(f"url: {detail}")


def is_forbidden(ip: IPAddress) -> bool:
    """True for anything but a public unicast address, looking inside IPv6 forms that embed
    an IPv4 address (mapped ::ffff:a.b.c.d, 6to4, NAT64, Teredo)."""
    if isinstance(ip, ipaddress.IPv6Address):
        # Mapped (::ffff:a.b.c.d) and NAT64 addresses reach exactly the IPv4 address inside
        # (on an IPv6-only host with DNS64 every IPv4 site has a NAT64 address): judge that.
        inner = ip.ipv4_mapped
        if inner is None and any(ip in net for net in _NAT64):
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            return is_forbidden(inner)
        # 6to4 and Teredo tunnel to the IPv4 addresses they carry: those must be public too.
        tunnelled = [ip.sixtofour] if ip.sixtofour is not None else []
        if ip.teredo is not None:
            tunnelled.extend(ip.teredo)
        if any(is_forbidden(v4) for v4 in tunnelled):
            return True
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        # Shared address space (100.64/10), documentation and benchmark ranges, …
        or not ip.is_global
    )


def parse(url: str) -> Target:
    """The URL's shape alone (no DNS): raise Invalid(code="invalid_url") or return its parts."""
    if not isinstance(url, str) or not url.strip():
        raise _invalid("enter the URL to send events to")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise _invalid("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _invalid("not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise _invalid("only http:// and https:// URLs are allowed")
    if "@" in parts.netloc:
        raise _invalid("must not contain a user name or password")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise _invalid("has no host")
    if port == 0:
        raise _invalid("port 0 is not a port")
    try:
        ip: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is None:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise _invalid("the host name is not valid") from None
        if not all(c.isalnum() or c in "-._" for c in host) or ".." in host:
            raise _invalid("the host name is not valid")
    else:
        host = ip.compressed
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    normalised = urlunsplit(SplitResult(scheme, netloc, parts.path or "/", parts.query, ""))
    if len(normalised) > MAX_URL_LENGTH:
        raise _invalid(f"at most {MAX_URL_LENGTH} characters")
    return Target(
        url=normalised,
        scheme=scheme,
        host=host,
        port=port if port is not None else SCHEMES[scheme],
        explicit_port=port is not None,
    )


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself; so do the odd forms
    the resolver accepts, such as 2130706433 for 127.0.0.1)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        # An IPv6 sockaddr may carry a zone ("fe80::1%eth0"); the address is before the "%".
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    return found


def checked_addresses(host: str, port: int) -> list[IPAddress]:
    """The host's addresses if every one is public; RefusedAddress otherwise. All of them, not
    just the first: a name that answers with one public and one private address is refused,
    since which one a client picks is not ours to choose."""
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(f"{host} does not resolve ({exc})") from None
    if not addresses:
        raise Unresolvable(f"{host} does not resolve")
    bad = [str(ip) for ip in addresses if is_forbidden(ip)]
    if bad:
        what = f"{host} is" if bad == [host] else f"{host} resolves to {', '.join(bad)}, which is"
        raise RefusedAddress(
            f"{what} not a public address (loopback, private, link-local and other "
            "non-public addresses are refused)"
        )
    return addresses


def check_url(url: str, *, allow_private: bool) -> str:
    """The normalised URL, or Invalid(code="invalid_url") saying what is wrong.

    With allow_private=False the host is resolved and every address must be public; a host that
    does not resolve is refused too (the same check runs again at every send)."""
    target = parse(url)
    if not allow_private:
        try:
            checked_addresses(target.host, target.port)
        except RefusedAddress as exc:
            raise _invalid(str(exc)) from None
    return target.url


def pinned_address(target: Target) -> IPAddress:
    """At send time: resolve again, check again, and return the address to connect to.
    Raises RefusedAddress when the host now resolves to a refused address (or to none)."""
    return checked_addresses(target.host, target.port)[0]
