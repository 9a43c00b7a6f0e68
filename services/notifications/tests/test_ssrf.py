"""notifications.ssrf: which webhook URLs the service refuses to call."""
import pytest

from notifications.ssrf import UnsafeUrl, check_url, forbidden_range


def resolves_to(*addresses):
    def resolve(host, port):
        return list(addresses)
    return resolve


def unresolvable(host, port):
    raise OSError("Name or service not known")


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"),
    ("127.45.6.7", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.10", "private"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("100.64.0.1", "non-public"),  # carrier-grade NAT
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fd12:3456:789a::1", "unique local"),
    ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:10.0.0.1", "private"),
    ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 around 169.254.169.254
])
def test_non_public_addresses_are_named(address, kind):
    assert forbidden_range(address) == kind


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert forbidden_range(address) is None
    assert check_url("https://hooks.example.com/in", resolve=resolves_to(address)) == [address]


def test_hostname_resolving_to_loopback_is_refused():
    with pytest.raises(UnsafeUrl, match=r"resolves to 127\.0\.0\.1, a loopback address"):
        check_url("https://innocent.example.com/hook", resolve=resolves_to("127.0.0.1"))


def test_one_private_address_among_public_ones_is_enough_to_refuse():
    with pytest.raises(UnsafeUrl, match="10.0.0.5"):
        check_url("https://mixed.example.com/", resolve=resolves_to("93.184.216.34", "10.0.0.5"))


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://[::1]/hook", "http://169.254.169.254/"])
def test_literal_addresses_are_checked_too(url):
    def resolve(host, port):  # what getaddrinfo does with a literal
        return [host]
    with pytest.raises(UnsafeUrl):
        check_url(url, resolve=resolve)


def test_admin_may_allow_private_networks():
    assert check_url("http://127.0.0.1:9000/hook", allow_private_network=True,
                     resolve=resolves_to("127.0.0.1")) == []


@pytest.mark.parametrize("url, message", [
    ("ftp://hooks.example.com/", "Only http and https"),
    ("file:///etc/passwd", "Only http and https"),
    ("gopher://hooks.example.com/", "Only http and https"),
    ("hooks.example.com/no-scheme", "Only http and https"),
    ("https://user:pass@hooks.example.com/", "credentials"),
    ("https://token@hooks.example.com/", "credentials"),
    ("https:///path-only", "no host"),
    ("https://hooks.example.com:99999/", "Not a valid URL"),
])
def test_scheme_credentials_and_shape_are_checked_even_when_private_networks_are_allowed(url, message):
    for allow in (False, True):
        with pytest.raises(UnsafeUrl, match=message):
            check_url(url, allow_private_network=allow, resolve=resolves_to("93.184.216.34"))


def test_unresolvable_host_is_refused():
    with pytest.raises(UnsafeUrl, match="does not resolve"):
        check_url("https://nowhere.invalid/", resolve=unresolvable)
