"""Open a URL a package names, only at an address a package may make us reach.

A `media.csv` is a file anyone can send: without this, `--fetch-remote` would fetch whatever it names, the
cloud's metadata service (169.254.169.254), a service on the machine itself (127.0.0.1, ::1) or the lab's
own network (10.x, 192.168.x), and keep the answer in the package. So:

- the host name is resolved once and EVERY address it resolves to is checked (one private address among
  public ones refuses the URL); IPv4 written inside IPv6 (::ffff:a.b.c.d, 6to4, NAT64) is checked as IPv4;
- the connection goes to an address that was checked, never through a second lookup (a name that resolves
  to a public address when checked and to 127.0.0.1 when connecting cannot slip through), and HTTPS still
  verifies the certificate for the URL's host name;
- a redirect is followed by the same steps (resolved, checked, connected to the checked address), at most
  MAX_REDIRECTS times;
- `--fetch-allow-private` lets a lab fetch from its own network (private, loopback, shared and other
  non-public addresses); link-local (the metadata service), multicast and unspecified addresses are
  refused even then.

Environment proxies are not used: a proxy would resolve the name again, out of our sight.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import urllib.error
import urllib.parse
from dataclasses import dataclass

USER_AGENT = "deepfaune-plugin"
MAX_REDIRECTS = 5
ALLOW_OPTION = "--fetch-allow-private"
_REDIRECTS = {301, 302, 303, 307, 308}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_PUBLIC_ONLY = ("unspecified", "link-local", "multicast")  # refused even with ALLOW_OPTION

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(OSError):
    """A URL whose host is (or resolves to) an address a package may not make us reach; nothing was sent."""

    def __init__(self, host: str, why: str):
        super().__init__(why)
        self.host = host


def _embedded_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), or None."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_kind(ip: Address) -> str | None:
    """What makes `ip` not a public address ("loopback", "private"...), or None for a public one."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        kind = address_kind(inner)
        if kind is not None or ip.ipv4_mapped is not None:
            return kind
    for kind, flag in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                       ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                       ("reserved", ip.is_reserved), ("private", ip.is_private)):
        if flag:
            return kind
    return None if ip.is_global else "non-public"


def refused_kind(ip: Address, allow_private: bool) -> str | None:
    """The kind of address that makes `ip` refused ("loopback"), or None when it may be reached."""
    kind = address_kind(ip)
    return None if kind is None or (allow_private and kind not in _PUBLIC_ONLY) else kind


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class Target:
    """One checked URL: where to connect (addresses already checked) and what to ask."""

    scheme: str
    host: str  # as in the URL: the name HTTPS verifies and the Host header carries
    port: int
    path: str
    addresses: tuple[tuple, ...]  # getaddrinfo rows, every one checked


def resolve(url: str, allow_private: bool) -> Target:
    """The URL's host resolved (once) and every address checked; AddressRefused before anything is sent."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"{scheme or 'no'} scheme: only http and https are fetched")
    host = parts.hostname
    if not host:
        raise ValueError("no host in the URL")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"bad port in {parts.netloc}") from None
    try:
        rows = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as err:
        raise urllib.error.URLError(err) from None
    for row in rows:
        ip = ipaddress.ip_address(row[4][0].split("%", 1)[0])
        kind = refused_kind(ip, allow_private)
        if kind is not None:
            what = f"{host} is" if _literal(host) == ip else f"{host} resolves to {ip},"
            more = "" if kind in _PUBLIC_ONLY else f" (to fetch from your own network: {ALLOW_OPTION})"
            raise AddressRefused(host, f"{what} a {kind} address: refused, nothing sent{more}")
    if not rows:
        raise urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, f"{host}: no address"))
    path = parts.path or "/"
    return Target(scheme, host, port, path + (f"?{parts.query}" if parts.query else ""), tuple(rows))


def _connect(target: Target, timeout: float) -> socket.socket:
    """A TCP connection to one of the target's checked addresses (the first that answers)."""
    last: OSError | None = None
    for family, kind, proto, _, sockaddr in target.addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as err:
            sock.close()
            last = err
    raise last if last is not None else OSError("no address to connect to")


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self.target = target

    def connect(self):
        self.sock = _connect(self.target, self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self.target = target

    def connect(self):
        sock = _connect(self.target, self.timeout)
        try:
            self.sock = self._context.wrap_socket(sock, server_hostname=self.target.host)
        except BaseException:
            sock.close()
            raise


class Answer:
    """A response and its connection, closed together."""

    def __init__(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse):
        self.connection, self.response = connection, response
        self.headers, self.status = response.headers, response.status
        self.read, self.read1 = response.read, response.read1

    def close(self) -> None:
        self.response.close()
        self.connection.close()

    def __enter__(self) -> "Answer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_url(url: str, timeout: float, allow_private: bool = False) -> Answer:
    """GET `url` (its fragment dropped), following redirects, each hop resolved and checked before it is
    asked. Raises AddressRefused, urllib.error.HTTPError for an HTTP error, urllib.error.URLError when the
    server cannot be reached (the connect and send steps, as urlopen), ValueError for a URL we do not fetch."""
    url = urllib.parse.urldefrag(url).url
    for _ in range(MAX_REDIRECTS + 1):
        target = resolve(url, allow_private)
        kind = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
        connection = kind(target, timeout)
        try:
            connection.request("GET", target.path, headers={"User-Agent": USER_AGENT})
        except OSError as err:
            connection.close()
            raise urllib.error.URLError(err) from None
        try:
            response = connection.getresponse()
        except BaseException:
            connection.close()
            raise
        answer = Answer(connection, response)
        if response.status in _REDIRECTS and response.getheader("Location"):
            url = urllib.parse.urldefrag(urllib.parse.urljoin(url, response.getheader("Location"))).url
            answer.close()
            continue
        if not 200 <= response.status < 300:
            answer.close()
            raise urllib.error.HTTPError(url, response.status, response.reason, response.headers, None)
        return answer
    raise ValueError(f"more than {MAX_REDIRECTS} redirects")

