"""Request-wide guards that belong before any view or form sees the data."""

from __future__ import annotations

import codecs
from urllib.parse import unquote_to_bytes

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

# Django decodes query strings and form bodies with errors="replace": invalid UTF-8 silently
# becomes U+FFFD and is stored as if the operator had typed it. The query string and a
# urlencoded body are checked here as bytes, after percent-decoding, before Django decodes them;
# a multipart body is decoded through request.encoding, so a codec that is strict whatever
# `errors` the caller asks for turns its replacements into the same refusal.
STRICT_UTF8 = "profileops-strict-utf-8"


def _strict_decode(data, errors: str = "strict"):
    return codecs.utf_8_decode(data, "strict", True)


class _StrictIncrementalDecoder(codecs.BufferedIncrementalDecoder):
    def _buffer_decode(self, data, errors, final):
        return codecs.utf_8_decode(data, "strict", final)


_UTF8 = codecs.lookup("utf-8")
_STRICT_CODEC = codecs.CodecInfo(
    name=STRICT_UTF8, encode=_UTF8.encode, decode=_strict_decode,
    incrementalencoder=_UTF8.incrementalencoder, incrementaldecoder=_StrictIncrementalDecoder,
    streamreader=_UTF8.streamreader, streamwriter=_UTF8.streamwriter)


def _search(name: str):
    return _STRICT_CODEC if name.replace("_", "-") == STRICT_UTF8 else None


codecs.register(_search)

INVALID_UTF8 = ("The request is not valid UTF-8 text (a form field or the address holds bytes "
                "that are not UTF-8); nothing was saved. Send it again from a current browser.")


class StrictUtf8RequestMiddleware:
    """Refuses (400) a request whose query string or form data is not valid UTF-8, instead of
    letting U+FFFD take the place of what was sent. Runs before CSRF and sessions, which read
    the form data too."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            _check_urlencoded(request.META.get("QUERY_STRING", "").encode("latin-1"))
            if request.method == "POST":
                if request.content_type == "application/x-www-form-urlencoded":
                    _check_urlencoded(request.body)
                elif request.content_type == "multipart/form-data":
                    request.encoding = STRICT_UTF8
                    request.POST  # noqa: B018 - parsed here, once, so a bad byte is refused here
        except UnicodeError:
            return HttpResponseBadRequest(INVALID_UTF8, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


def _check_urlencoded(raw: bytes) -> None:
    """Raise UnicodeDecodeError unless every percent-decoded byte sequence is UTF-8."""
    if b"%" in raw or not raw.isascii():
        unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
