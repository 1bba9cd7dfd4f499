"""The Bulk Profile Update protocol: build the files byte-exactly, read Target's answers.

Pure Python — no models, no database — like target.py; the facts are in
shared/reference/target-profile-api.md §2, the emulator's twin is target_emulator/bulk.py.

A file is UTF-8 text: the first line ``batch=<pcId|thirdPartyId>,<name>,<name>…``, then one
visitor per line, ``<id>,<value>,<value>…``, every line ending in ``\\n``. Names, ids and values
are percent-encoded exactly as the single route encodes them (target.encode_component: all but
the unreserved set, so a ``,`` in a value is ``%2C`` and never splits a field). Names are sorted;
every row of a file has exactly the file's names — rows whose attribute sets differ go in
separate files (a missing column would be an empty value, which Target ignores). A row holding
an empty value never goes bulk (Target ignores it, so it would not clear anything as the single
route's empty value does): ``route_problem`` says so and the row stays single. Files are split so
that none holds more than ``max_rows`` rows or reaches ``max_bytes``.
"""

from __future__ import annotations

import html
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .target import encode_component

V1, V2 = "v1", "v2"
PC_ID, THIRD_PARTY_ID = "pcId", "thirdPartyId"
ID_COLUMNS = {"mboxPC": PC_ID, "mbox3rdPartyId": THIRD_PARTY_ID}
CONTENT_TYPE = "text/plain; charset=utf-8"
ANSWER_KEEP_CHARS = 4000
TARGET_EDGE_SUFFIX = ".tt.omtrdc.net"
COUNT_NAMES = ("consumedCount", "successfulUpdates", "profilesNotFound", "failedUpdates")


@dataclass(frozen=True)
class BulkRow:
    update_id: int
    identity_type: str  # "mboxPC" or "mbox3rdPartyId"
    identity: str
    attributes: dict[str, str]


@dataclass
class FilePlan:
    version: str
    id_column: str
    names: tuple[str, ...]
    update_ids: list[int] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    size: int = 0

    @property
    def body(self) -> bytes:
        return header_line(self.id_column, self.names) + b"".join(self.lines)


def bulk_url(base_url: str, client_code: str, version: str) -> str:
    middle = "/v2" if version == V2 else ""
    return f"{base_url.rstrip('/')}/m2/{encode_component(client_code)}{middle}/profile/batchUpdate"


def version_for(identity_type: str, pc_id_bulk: str) -> str | None:
    """The bulk version a row goes to, or None when it stays single: customer ids go to v2;
    mboxPC ids follow the connection's setting (v1 where the site uses the Experience Cloud ID,
    since Adobe says not to key a v2 file on pcId there)."""
    if identity_type == "mbox3rdPartyId":
        return V2
    return pc_id_bulk if pc_id_bulk in (V1, V2) else None


def route_problem(row: BulkRow, pc_id_bulk: str) -> str:
    """Why the row cannot go bulk ("" when it can)."""
    if version_for(row.identity_type, pc_id_bulk) is None:
        return "mboxPC updates stay on the single route for this connection"
    if not row.attributes:
        return "an update without attributes has nothing to send in bulk"
    if any(value == "" for value in row.attributes.values()):
        return ("an empty value would be ignored by the bulk API instead of clearing the "
                "attribute")
    return ""


def header_line(id_column: str, names: tuple[str, ...]) -> bytes:
    return ("batch=" + ",".join([id_column, *(encode_component(n) for n in names)])
            + "\n").encode("ascii")


def row_line(row: BulkRow, names: tuple[str, ...]) -> bytes:
    fields = [row.identity] + [row.attributes[name] for name in names]
    return (",".join(encode_component(f) for f in fields) + "\n").encode("ascii")


def build_files(rows: list[BulkRow], *, pc_id_bulk: str, max_rows: int,
                max_bytes: int) -> list[FilePlan]:
    """The files for `rows` (each must have no route_problem), grouped by version, id column
    and attribute set, in the order of their first row; each within the limits."""
    open_files: dict[tuple, FilePlan] = {}
    done: list[FilePlan] = []
    for row in rows:
        names = tuple(sorted(row.attributes))
        version = version_for(row.identity_type, pc_id_bulk)
        key = (version, ID_COLUMNS[row.identity_type], names)
        line = row_line(row, names)
        plan = open_files.get(key)
        if plan is not None and (len(plan.lines) >= max_rows
                                 or plan.size + len(line) >= max_bytes):
            done.append(plan)
            plan = None
        if plan is None:
            plan = FilePlan(version, key[1], names)
            plan.size = len(header_line(key[1], names))
            if plan.size + len(line) >= max_bytes:
                raise ValueError(f"update #{row.update_id} alone does not fit in a bulk file")
            open_files[key] = plan
        plan.update_ids.append(row.update_id)
        plan.lines.append(line)
        plan.size += len(line)
    done.extend(open_files.values())
    return sorted(done, key=lambda plan: plan.update_ids[0])


# --- answers ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UploadAnswer:
    outcome: str  # "accepted", "transient" or "refused"
    status_url: str = ""
    message: str = ""


def _tag(text: str, name: str) -> str | None:
    # Target's answers are small flat XML; a regex reads them without an XML parser's entity
    # expansion (a hostile answer cannot blow up).
    found = re.search(rf"<{name}>(.*?)</{name}>", text, re.S)
    return html.unescape(found.group(1).strip()) if found else None


def read_upload_answer(http_status: int | None, text: str) -> UploadAnswer:
    """What an upload's answer means: 2xx with success=true and a batchStatus URL is accepted;
    no answer, 429 and 5xx are transient (retry later); the rest is refused."""
    if http_status is None or http_status == 429 or http_status >= 500:
        return UploadAnswer("transient", message=f"HTTP {http_status}" if http_status else "")
    success, url = _tag(text, "success"), _tag(text, "batchStatus")
    message = _tag(text, "message") or ""
    if 200 <= http_status < 300 and success == "true" and url:
        return UploadAnswer("accepted", status_url=url, message=message)
    return UploadAnswer("refused", message=message or f"HTTP {http_status}")


def read_status_answer(text: str) -> tuple[str, dict[str, int]]:
    """(status, counts) of a batchStatus answer; status "" when the answer has none."""
    counts = {}
    for name in COUNT_NAMES:
        value = _tag(text, name)
        if value is not None and value.isdigit():
            counts[name] = int(value)
    size = _tag(text, "batchSize")
    if size is not None and size.isdigit():
        counts["batchSize"] = int(size)
    return (_tag(text, "status") or "").lower(), counts


def status_url_problem(url: str, base_url: str) -> str:
    """Why the batchStatus URL Target gave must not be called ("" when it may): it is used
    verbatim, never rebuilt, but only over http(s), without credentials, to a Target edge host
    (``*.tt.omtrdc.net``) — or, for a connection whose base URL is a loopback address (the
    emulator), a loopback address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL"
    if parts.username or parts.password:
        return "the URL carries credentials"
    host = parts.hostname.lower()
    if host.endswith(TARGET_EDGE_SUFFIX):
        return ""
    if _loopback(host) and _loopback((urlsplit(base_url).hostname or "").lower()):
        return ""
    return "not a Target edge host"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def with_details(url: str) -> str:
    if re.search(r"[?&]showDetails=", url):
        return url
    return url + ("&" if "?" in url else "?") + "showDetails=true"


def batch_id_of(url: str) -> str:
    found = re.search(r"[?&]batchId=([^&#]*)", url)
    return found.group(1)[:200] if found else ""
