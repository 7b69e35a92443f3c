from __future__ import annotations

from urllib.parse import parse_qs

from framecast.storage import signing


def _parts(query: str) -> tuple[int, str]:
    q = parse_qs(query)
    return int(q["expires"][0]), q["signature"][0]


def test_valid_link_verifies_until_it_expires() -> None:
    query, expires = signing.sign(b"secret", "/v1/files/a/video.mp4", 60, now=1000)
    exp, sig = _parts(query)
    assert exp == expires == 1060
    assert signing.verify(b"secret", "/v1/files/a/video.mp4", exp, sig, now=1060) is None
    assert signing.verify(b"secret", "/v1/files/a/video.mp4", exp, sig, now=1061) == "expired"


def test_tampering_is_detected() -> None:
    query, _ = signing.sign(b"secret", "/v1/files/a/video.mp4", 60, now=1000)
    exp, sig = _parts(query)
    assert signing.verify(b"secret", "/v1/files/b/video.mp4", exp, sig, now=1000) == "bad_signature"
    assert (
        signing.verify(b"secret", "/v1/files/a/video.mp4", exp + 3600, sig, now=1000)
        == "bad_signature"
    )
    assert signing.verify(b"other", "/v1/files/a/video.mp4", exp, sig, now=1000) == "bad_signature"


def test_a_signature_that_is_not_ascii_is_just_a_bad_signature() -> None:
    # hmac.compare_digest raises TypeError on non-ASCII text: that was a 500.
    for signature in ["é", "\ufffd" * 43, "\x00", "", "a" * 10_000, "\udcff"]:
        assert signing.verify(b"secret", "/v1/files/a", 2000, signature, now=1000) == (
            "bad_signature"
        )
