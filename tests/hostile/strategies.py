"""Hypothesis strategies for hostile text: what a careless integration, a pasted spreadsheet or
an attacker could hand ProfileOps.

Plain `st.text()` rarely produces the characters that break query strings, databases or
spreadsheets, so every strategy here mixes generic Unicode with a sampled list of known trouble:
URL syntax (& = + % # / ?), whitespace and line breaks, emoji (4-byte UTF-8, ZWJ sequences),
combining marks, right-to-left text and direction overrides, the byte-order mark, NUL, lone
surrogates (not encodable as UTF-8), and very long strings (GET/POST switch, 60 KB limit).
"""

from __future__ import annotations

import unicodedata

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

NASTY = (
    "&", "=", "+", "%", "#", "/", "?", " ", ";", ",", "'", '"', "\\", ".", "..", "*",
    "%20", "%2B", "%zz", "%", "+%2F", "&mboxPC=x", "&profile.x=y", "profile.", "=&=&",
    "\n", "\r\n", "\r", "\t", "\x0b", "\x7f", "\x85", "\u2028", "\u00a0", "\u3000",
    "😀", "👩\u200d👩\u200d👧", "🇳🇱", "e\u0301", "\u0301", "\u0308\u0308", "Zürich",
    "שלום", "مرحبا", "\u202e", "\u200f", "\u200b", "\ufeff", "\uffff", "\U0010ffff",
    "\x00", "\ud800", "\udfff", "<script>", "=1+1", "@SUM(A1)", "-2+3", "名前",
)

# Generic Unicode, surrogates excluded (they come from NASTY, on purpose, at a known rate).
_generic = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
_piece = st.one_of(st.sampled_from(NASTY), _generic)

# Strings with surrounding whitespace, control characters, NUL and surrogates included.
hostile_text = st.lists(_piece, max_size=12).map("".join)

# The same without NUL and lone surrogates (which are always refused): most of these must go
# through, so the tests see far more round trips than refusals.
UNENCODABLE = ("\x00", "\ud800", "\udfff")
_clean_piece = st.one_of(st.sampled_from([p for p in NASTY if p not in UNENCODABLE]), _generic)
encodable_text = st.lists(_clean_piece, max_size=12).map("".join)


def _repeated(piece: str, times: int) -> str:
    return piece * times


# Long strings: a few kilobytes (near the 8 KB GET limit) up to past the 60 KB POST limit.
long_text = st.builds(_repeated, st.sampled_from(["a", "&", "é", "😀", "%", " x", "名"]),
                      st.integers(min_value=1_000, max_value=25_000))

any_text = st.one_of(hostile_text, encodable_text, encodable_text, long_text)

# Identities that must be accepted as mbox3rdPartyId: printable, no surrounding whitespace,
# neither '+' nor '/', no invisible formatting character (Cf) or U+FFFD (refused as spoofing),
# at most 256 characters — but still full of URL syntax and Unicode.
_printable = st.characters(exclude_categories=("Cs", "Cc", "Cf", "Zl", "Zp"),
                           exclude_characters="+/\ufffd")
_inner = st.lists(st.one_of(
    st.sampled_from([p for p in NASTY if p.isprintable() and "+" not in p and "/" not in p
                     and "\ufffd" not in p
                     and not any(unicodedata.category(c) == "Cf" for c in p)]),
    st.text(_printable, min_size=1, max_size=4)), min_size=1, max_size=20).map("".join)
acceptable_third_party_id = _inner.map(str.strip).filter(lambda s: 0 < len(s) <= 256)

identity_types = st.sampled_from(["mboxPC", "mbox3rdPartyId"])

# Bounded and repeatable enough for CI: every example here costs real database writes and, for
# round trips, a real HTTP request to the emulator.
HOSTILE = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
)
