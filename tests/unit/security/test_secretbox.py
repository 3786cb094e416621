from __future__ import annotations

import os

import pytest

from gophergate.security.secretbox import NONCE_BYTES, SecretBox, SecretBoxError, mask


def test_round_trip_with_the_owner_as_associated_data() -> None:
    box = SecretBox(os.urandom(32))
    sealed = box.seal("sk-live-1234567890abcd", "openai")
    assert b"sk-live" not in sealed
    assert box.open(sealed, "openai") == "sk-live-1234567890abcd"


def test_every_seal_uses_a_fresh_nonce() -> None:
    box = SecretBox(os.urandom(32))
    a, b = box.seal("same", "p"), box.seal("same", "p")
    assert a[:NONCE_BYTES] != b[:NONCE_BYTES] and a != b


def test_a_ciphertext_moved_to_another_provider_does_not_open() -> None:
    box = SecretBox(os.urandom(32))
    with pytest.raises(SecretBoxError):
        box.open(box.seal("secret", "openai"), "deepseek")


def test_another_key_or_a_flipped_bit_does_not_open() -> None:
    sealed = SecretBox(os.urandom(32)).seal("secret", "p")
    with pytest.raises(SecretBoxError):
        SecretBox(os.urandom(32)).open(sealed, "p")
    box = SecretBox(os.urandom(32))
    good = bytearray(box.seal("secret", "p"))
    good[-1] ^= 1
    with pytest.raises(SecretBoxError):
        box.open(bytes(good), "p")


def test_mask_keeps_the_prefix_and_the_last_four() -> None:
    assert mask("sk-proj-abcdefghijklmnop1234") == "sk-...1234"
    assert mask(None) is None and mask("") is None
    assert mask("short") == "..."
