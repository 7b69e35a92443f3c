"""Webhook URLs and signatures without a server: which URLs are refused and how they are named,
and signatures the reference implementation (``standardwebhooks``) accepts."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from framecast.admission.keys import env_key_secret, new_secret
from framecast.errors import InputError
from framecast.fetch import Resolver
from framecast.webhooks.signing import signature_header
from framecast.webhooks.targets import check_webhook_url, parse_webhook_url


def _resolving_to(*addresses: str) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


def _check(url: str, *addresses: str, allow_private: bool = False) -> str:
    resolver = _resolving_to(*addresses)
    return asyncio.run(check_webhook_url(url, allow_private=allow_private, resolver=resolver)).url


def test_a_public_url_passes_and_keeps_its_query() -> None:
    url = "https://hooks.example.com/runcomfy?token=abc"
    assert _check(url, "93.184.216.34") == url
    parsed = parse_webhook_url("http://Hooks.Example.com:8080")
    assert (parsed.host, parsed.port, parsed.target, parsed.host_header) == (
        "hooks.example.com",
        8080,
        "/",
        "hooks.example.com:8080",
    )


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("10.1.2.3", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("100.64.0.7", "carrier-grade NAT"),
    ],
)
def test_a_name_resolving_to_an_internal_address_is_refused_without_naming_it(
    address: str, rule: str
) -> None:
    with pytest.raises(InputError) as caught:
        _check("https://hooks.example.com/x", "93.184.216.34", address)
    assert caught.value.code == "webhook_url_refused"
    assert rule in caught.value.message and address not in caught.value.message
    assert _check("https://hooks.example.com/x", address, allow_private=True)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("javascript:alert(1)", "webhook_url_unsupported_scheme"),
        ("//hooks.example.com/x", "webhook_url_unsupported_scheme"),
        ("https://hooks.example.com/a b", "webhook_url_invalid"),
        ("https:///x", "webhook_url_invalid"),
        ("https://hooks.example.com:0/", "webhook_url_invalid"),
        ("https://" + "a" * 2050 + ".com/", "webhook_url_invalid"),
    ],
)
def test_malformed_urls_are_refused_before_any_lookup(url: str, code: str) -> None:
    with pytest.raises(InputError) as caught:
        _check(url)  # a lookup would find no address and fail differently
    assert caught.value.code == code


def test_an_unresolvable_host_is_refused() -> None:
    with pytest.raises(InputError, match="could not be resolved"):
        _check("https://nowhere.example.com/")


def test_the_reference_accepts_the_signature_with_each_secret_during_a_rotation() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"request_id":"r","status":"completed"}'
    now = dt.datetime.now(dt.UTC)
    stamp = int(now.timestamp())
    header = signature_header([new, old], "msg_1", stamp, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(stamp), "webhook-signature": header}
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers)["status"] == "completed"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(ValueError, match="at least one secret"):
        signature_header([], "msg_1", stamp, body)


def test_an_env_key_secret_is_stable_per_server_and_owner() -> None:
    one = env_key_secret(b"server-a", "env_1")
    assert one == env_key_secret(b"server-a", "env_1")
    assert one.startswith("whsec_")
    assert one not in {env_key_secret(b"server-b", "env_1"), env_key_secret(b"server-a", "env_2")}
    Webhook(one)  # the reference reads it as a secret
