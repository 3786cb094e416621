"""Secrets at rest (provider API keys): AES-256-GCM under the settings' 32-byte encryption key.

Stored form: a fresh random 96-bit nonce || ciphertext+tag. The associated data binds a secret to its owner
(the provider name), so a ciphertext copied onto another row does not decrypt there."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class SecretBoxError(Exception):
    """A stored secret does not decrypt (another encryption key, another owner, or a damaged value)."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the encryption key must be 32 bytes")
        self._key = key
        self._cipher: AESGCM | None = None

    @property
    def _aead(self) -> AESGCM:
        # Imported on first use: the cryptography bindings cost a worker ~7 MB, and most gateways store no
        # provider key in the database.
        if self._cipher is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._cipher = AESGCM(self._key)
        return self._cipher

    def seal(self, plaintext: str, owner: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext.encode(), owner.encode())

    def open(self, blob: bytes, owner: str) -> str:
        if len(blob) <= NONCE_BYTES:
            raise SecretBoxError("stored secret is too short")
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], owner.encode()).decode()
        except InvalidTag:
            raise SecretBoxError("stored secret does not decrypt with this encryption key") from None


def mask(secret: str | None) -> str | None:
    """``sk-...abcd``: enough to recognise a key, never enough to use it."""
    if not secret:
        return None
    if len(secret) < 12:
        return "..." + secret[-2:] if len(secret) >= 8 else "..."
    return f"{secret[:3]}...{secret[-4:]}"
