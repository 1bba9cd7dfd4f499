"""The keyed hash that replaces customer data when it is purged (retention.py, forgetting.py).

An HMAC-SHA256 under PROFILEOPS_HASH_KEY, not a plain hash: identities and profile values are
short and guessable, so anyone could hash "customer-1" and find it in a plain SHA-256; without
the key they cannot. The same value always gives the same hash, so "was the same value sent
twice?" and "is this the forgotten visitor?" can still be answered after the value is gone.

Development (DEBUG on) uses a well-known key; production refuses to start without one of at
least 32 characters (checks.py, profileops.E018). Changing the key later makes old hashes stop
matching new ones — suppressed visitors would no longer be recognised — so it is set once.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from .conf import setting

PREFIX = "hmac:"
DEVELOPMENT_KEY = "profileops-development-hash-key-not-for-production"
MIN_KEY_LENGTH = 32


def _key() -> bytes:
    return (setting("HASH_KEY") or DEVELOPMENT_KEY).encode("utf-8")


def keyed_hash(value: Any) -> str:
    """"hmac:" + 40 hex digits (160 bits) of HMAC-SHA256(key, value). A value that already is
    a keyed hash is returned as it is, so purging twice changes nothing."""
    text = value if isinstance(value, str) else str(value)
    if is_hashed(text):
        return text
    digest = hmac.new(_key(), text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:40]


def is_hashed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX) and len(value) == len(PREFIX) + 40


def hashed_tree(value: Any) -> Any:
    """`value` (JSON) with every string and number leaf replaced by its keyed hash; keys (attribute
    names, field names), booleans and nulls stay, so the structure survives."""
    if isinstance(value, dict):
        return {key: hashed_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [hashed_tree(item) for item in value]
    if value is None or isinstance(value, bool):
        return value
    return keyed_hash(value)
