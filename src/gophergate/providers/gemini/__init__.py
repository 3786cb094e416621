"""The native Gemini provider (providers.md §3): pure translators plus one thin HTTP class."""

from gophergate.providers.gemini.provider import GeminiProvider
from gophergate.providers.gemini.signatures import SignatureStore

__all__ = ["GeminiProvider", "SignatureStore"]
