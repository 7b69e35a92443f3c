"""Which resolved addresses the image fetcher may connect to."""

from __future__ import annotations

import ipaddress

import pytest

from framecast.fetch import refusal_reason


def teredo(server: str, client: str) -> str:
    """A Teredo address (2001::/32) with the client address obfuscated as RFC 4380 says."""
    server_bits = int(ipaddress.IPv4Address(server))
    client_bits = int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF
    value = (0x20010000 << 96) | (server_bits << 64) | (0x8000 << 48) | (0xFFFF << 32) | client_bits
    return str(ipaddress.IPv6Address(value))


REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local (cloud metadata)"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "'this network'"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.0.8", "IETF protocol"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("fc00::1", "private (unique local)"),
    ("fd12:3456::1", "private (unique local)"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),  # is_global says True for this one
    ("2001:db8::1", "documentation"),
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped private"),
    ("::ffff:169.254.169.254", "IPv4-mapped link-local (cloud metadata)"),
    ("::127.0.0.1", "IPv4-compatible loopback"),
    ("::8.8.8.8", "IPv4-compatible (deprecated)"),
    ("2002:7f00:1::", "6to4 loopback"),
    ("2002:a9fe:a9fe::1", "6to4 link-local (cloud metadata)"),
    ("64:ff9b::7f00:1", "NAT64 loopback"),
    ("64:ff9b::a00:1", "NAT64 private"),
    ("64:ff9b:1::1", "local-use NAT64"),
    (teredo("8.8.8.8", "127.0.0.1"), "Teredo loopback"),
    (teredo("10.0.0.1", "8.8.8.8"), "Teredo private"),
    (teredo("8.8.8.8", "8.8.4.4"), "non-public"),  # 2001::/23 is not globally routable
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "172.32.0.1",  # just past 172.16.0.0/12
    "100.128.0.1",  # just past the carrier-grade NAT block
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",  # connects to 8.8.8.8 itself
    "2002:808:808::1",  # 6to4 around a public address
    "64:ff9b::808:808",  # NAT64 around a public address
]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_refused_addresses_name_the_reason(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_scoped_link_local_is_refused() -> None:
    # getaddrinfo can return link-local IPv6 results with a zone index attached.
    assert refusal_reason(ipaddress.ip_address("fe80::1%eth0")) == "link-local"


def test_teredo_helper_builds_what_ipaddress_decodes() -> None:
    address = ipaddress.IPv6Address(teredo("8.8.8.8", "127.0.0.1"))
    assert address.teredo == (ipaddress.IPv4Address("8.8.8.8"), ipaddress.IPv4Address("127.0.0.1"))
