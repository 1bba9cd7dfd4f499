"""The emulator's received list as an HTML table (GET /_emulator/received.html), over real HTTP:
one row per update request, newest first, with method, identity type, identity, attributes,
outcome and time — every value HTML-escaped, because whatever a client sends ends up there."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
import requests

from updates.target import build_request


class TableReader(HTMLParser):
    """The table's header cells, its rows as lists of cell texts, and every tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.rows: list[list[str]] = []
        self.tags: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "li" and self._cell is not None and self._cell:
            self._cell.append("; ")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            (self.headers if tag == "th" else self.rows[-1]).append(text)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


# Every tag the page itself writes; a value that became markup would add another.
PAGE_TAGS = {"meta", "link", "title", "style", "h1", "p", "a", "table", "thead", "tbody", "tr", "th",
             "td", "ul", "li", "code"}


def send(emulator, *, identity, attributes, identity_type="mbox3rdPartyId"):
    req = build_request(base_url=emulator.base_url, client_code="acme",
                        identity_type=identity_type, identity=identity, attributes=attributes)
    return requests.request(req.method, req.url, data=req.body, headers=req.headers, timeout=5)


def table(emulator) -> tuple[requests.Response, TableReader]:
    response = requests.get(f"{emulator.base_url}/_emulator/received.html", timeout=5)
    reader = TableReader()
    reader.feed(response.text)
    return response, reader


def test_the_received_requests_read_as_a_table_newest_first(emulator):
    send(emulator, identity="customer-1", attributes={"loanStatus": "funded", "tier": "gold"})
    send(emulator, identity="visitor-pc-9", identity_type="mboxPC", attributes={"tier": "silver"})

    response, reader = table(emulator)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert reader.headers == ["Method", "Identity type", "Identity", "Attributes", "Outcome",
                              "Time"]
    body = [row for row in reader.rows if row]
    assert len(body) == 2
    newest, oldest = body
    assert newest[:4] == ["GET", "mboxPC", "visitor-pc-9", "tier = silver"]
    assert oldest[:4] == ["GET", "mbox3rdPartyId", "customer-1",
                          "loanStatus = funded; tier = gold"]
    assert oldest[4] == "acknowledged (HTTP 200)"
    assert oldest[5].endswith(" UTC") and oldest[5][:2] == "20"
    assert "2 update requests received" in response.text


def test_a_refused_request_shows_its_outcome_and_reason(emulator):
    requests.get(f"{emulator.base_url}/m2/acme/profile/update?profile.tier=gold", timeout=5)
    response, reader = table(emulator)
    assert "1 update request received" in response.text
    [row] = [row for row in reader.rows if row]
    assert row[1:3] == ["—", "—"]
    assert row[4].startswith("refused (HTTP 400)") and "no identity" in row[4]


def test_an_empty_emulator_says_nothing_was_received(emulator):
    _, reader = table(emulator)
    assert [row for row in reader.rows if row] == [["Nothing received yet."]]


@pytest.mark.parametrize("hostile", [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "</td></tr></table><h1>owned</h1>",
    "a & b <b>bold</b>",
])
def test_every_value_a_client_sent_is_html_escaped(emulator, hostile):
    send(emulator, identity=hostile, attributes={hostile: hostile, "plain": hostile})

    response, reader = table(emulator)
    # The markup arrives as text, never as tags: the row holds the exact strings sent.
    [row] = [row for row in reader.rows if row]
    assert row[2] == hostile
    assert row[3] == f"{hostile} = {hostile}; plain = {hostile}"
    assert set(reader.tags) <= PAGE_TAGS and reader.tags.count("h1") == 1
    assert hostile not in response.text


def test_the_emulator_front_page_links_to_the_table(emulator):
    page = requests.get(f"{emulator.base_url}/", timeout=5).text
    assert "href='/_emulator/received.html'" in page
