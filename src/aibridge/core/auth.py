"""Credentials: where the aibridge key is read from, how keys are made and stored.

Lookup order (DESIGN §3): ``X-AIBridge-Token`` (BYOK mode), then
``Authorization: Bearer``, then ``X-Api-Key``. Only a SHA-256 hash and a short
display prefix of a key are ever stored. Randomness comes in as an argument.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping

import attrs

KEY_PREFIX = "aib_"
DISPLAY_PREFIX_LEN = 10


@attrs.frozen(kw_only=True)
class PresentedCredential:
    key: str | None
    byok: bool
    #: which header carried the key ("x-aibridge-token", "authorization", "x-api-key")
    source: str | None


def presented_credential(headers: Mapping[str, str]) -> PresentedCredential:
    """Find the aibridge key in lower-cased request headers."""
    token = headers.get("x-aibridge-token", "").strip()
    if token:
        return PresentedCredential(key=token, byok=True, source="x-aibridge-token")
    auth = headers.get("authorization", "").strip()
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return PresentedCredential(key=value.strip(), byok=False, source="authorization")
    api_key = headers.get("x-api-key", "").strip()
    if api_key:
        return PresentedCredential(key=api_key, byok=False, source="x-api-key")
    return PresentedCredential(key=None, byok=False, source=None)


def new_key(random_bytes: bytes) -> str:
    """An aibridge key: ``aib_`` and URL-safe characters from ``random_bytes`` (>= 24 bytes)."""
    if len(random_bytes) < 24:
        raise ValueError("need at least 24 random bytes for a key")
    return KEY_PREFIX + base64.urlsafe_b64encode(random_bytes).decode().rstrip("=")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LEN]


def mask_secret(secret: str | None) -> str:
    """A hint safe to show or store: ``sk-a...efgh``; short secrets show nothing."""
    if not secret:
        return ""
    if len(secret) < 12:
        return "..."
    return f"{secret[:4]}...{secret[-4:]}"
