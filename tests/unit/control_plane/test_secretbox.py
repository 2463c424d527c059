"""Encryption at rest (control_plane.secretbox): AES-GCM with a random nonce, versioned, bound to its row."""

from __future__ import annotations

import pytest

from control_plane.errors import SecretUnreadable
from control_plane.secretbox import PREFIX, SecretBox

SECRET = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"


def test_round_trip_with_a_fresh_nonce_each_time() -> None:
    box = SecretBox("the secret")
    first, second = box.encrypt(SECRET, aad="certificate 1"), box.encrypt(SECRET, aad="certificate 1")
    assert first.startswith(PREFIX) and first != second  # randomised: equal keys do not look equal
    assert b"MIGHAgEA" not in first.encode()
    assert box.decrypt(first, aad="certificate 1") == SECRET == box.decrypt(second, aad="certificate 1")
    assert SecretBox("the secret").decrypt(first, aad="certificate 1") == SECRET  # derived, not stored


@pytest.mark.parametrize(
    ("secret", "aad", "mangle"),
    [
        ("another secret", "certificate 1", lambda s: s),  # another TOLLGATE_SECRET_KEY
        ("the secret", "certificate 2", lambda s: s),  # copied onto another row
        ("the secret", "certificate 1", lambda s: s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1]),  # damaged
        ("the secret", "certificate 1", lambda s: s.removeprefix(PREFIX)),  # no version prefix
    ],
)
def test_what_does_not_open_is_refused_without_the_value(secret: str, aad: str, mangle: object) -> None:
    stored = SecretBox("the secret").encrypt(SECRET, aad="certificate 1")
    with pytest.raises(SecretUnreadable) as info:
        SecretBox(secret).decrypt(mangle(stored), aad=aad)  # type: ignore[operator]
    assert "MIGHAgEA" not in str(info.value) and stored not in str(info.value)
