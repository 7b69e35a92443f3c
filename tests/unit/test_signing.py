from __future__ import annotations

from urllib.parse import parse_qs

from framecast import signing


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
