"""The keyed hash (updates/hashing.py): stable per value, different per key, idempotent, and the
structure of a JSON value survives it."""

from __future__ import annotations

from django.test import override_settings

from updates.hashing import hashed_tree, is_hashed, keyed_hash


def test_the_same_value_gives_the_same_hash_and_another_key_another():
    first = keyed_hash("customer-1")
    assert first == keyed_hash("customer-1") and is_hashed(first)
    assert "customer-1" not in first and first != keyed_hash("customer-2")
    with override_settings(PROFILEOPS={"HASH_KEY": "another-key-" + "x" * 32}):
        assert keyed_hash("customer-1") != first


def test_hashing_twice_changes_nothing():
    assert keyed_hash(keyed_hash("v")) == keyed_hash("v")


def test_a_json_value_keeps_its_keys_and_shape():
    tree = {"tier": {"before": "gold", "after": None}, "n": [1, True, "x"]}
    hashed = hashed_tree(tree)
    assert set(hashed) == {"tier", "n"} and hashed["tier"]["after"] is None
    assert hashed["tier"]["before"] == keyed_hash("gold") and hashed["n"][1] is True
    assert hashed["n"][0] == keyed_hash("1")
