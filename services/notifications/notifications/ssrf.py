"""Refusing webhook URLs that would make the service call into our own network (SSRF).

A webhook URL is chosen by whoever configures the integration, and the
service POSTs to it from inside the deployment: pointed at 127.0.0.1, at a
database host or at a cloud metadata endpoint (169.254.169.254) it would turn
the CRM into a proxy into places the internet cannot reach. So a URL must be
http(s), carry no credentials, and every address its host resolves to must
be a public one. The check runs when the URL is saved and again right before
each POST, because what a name resolves to can change after it was saved.

An admin may allow a webhook into private networks (an on-premises
integration); the scheme and credential rules hold even then.

Plain Python; the resolver is a parameter so tests need no DNS.
"""
import ipaddress
import socket
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")


class UnsafeUrl(ValueError):
    """The URL may not be called; the message says why, in words an admin can act on."""


def system_resolver(host, port):
    """Every address ``host`` resolves to (as text)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def parse(url):
    """(scheme, host, port) of an acceptable http(s) URL without credentials; UnsafeUrl otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("Not a valid URL.")
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeUrl("Only http and https URLs can be called.")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and in the delivery list; the
        # signature already proves to the receiver who is calling.
        raise UnsafeUrl("A URL must not contain credentials (user:password@).")
    if not parts.hostname:
        raise UnsafeUrl("The URL has no host.")
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme]


def forbidden_range(address):
    """The name of the non-public range ``address`` lies in, or None for a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id (fe80::1%eth0) is not part of it
    if ip.version == 6:
        # An IPv6 address can carry an IPv4 one (::ffff:127.0.0.1, 2002:7f00:1::):
        # judge the address it really reaches.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return forbidden_range(str(embedded))
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("unique local", ip.version == 6 and ip in UNIQUE_LOCAL),
        ("private", ip.is_private),
    )
    for name, hit in checks:
        if hit:
            return name
    # Whatever else is not globally routable (carrier-grade NAT 100.64.0.0/10,
    # documentation and benchmarking ranges, ...).
    return None if ip.is_global else "non-public"


def check_url(url, allow_private_network=False, resolve=None):
    """Raise UnsafeUrl unless ``url`` may be called now. Returns the addresses it resolved to.
    ``resolve(host, port)``: the addresses of a host (default: the system's resolver)."""
    _, host, port = parse(url)
    if allow_private_network:
        return []
    try:
        addresses = (resolve or system_resolver)(host, port)
    except (OSError, UnicodeError):
        raise UnsafeUrl(f"The host {host} does not resolve.")
    if not addresses:
        raise UnsafeUrl(f"The host {host} does not resolve.")
    for address in addresses:
        where = forbidden_range(address)
        if where:
            # Every address must be public: a client may pick any of them.
            raise UnsafeUrl(f"The host {host} resolves to {address}, a {where} address; only an admin's "
                            f"allow_private_network permits that.")
    return addresses
