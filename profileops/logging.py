"""LOG_FORMAT=json: one JSON object per line, for log shippers that parse rather than grep.

Each line carries time (UTC, ISO 8601), level, logger and message, plus — when the caller passed
them with ``extra=`` — the connection's client code, the update id, the send run id and the
import job id. No other
attribute of the record is copied, so nothing a caller attaches by accident (a request, a
response, a profile) reaches the log. An exception is reported by its type and its stack of code
locations (file, line, function — not even the source lines), without its message: messages of HTTP errors can quote the request URL, and that
carries profile values.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import traceback

# The only `extra=` keys that are written out; values are stringified ids and codes.
CONTEXT_FIELDS = ("connection", "update_id", "run_id", "import_job_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None and value != "":
                entry[name] = value if isinstance(value, int) else str(value)
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _, tb = record.exc_info
            entry["exception"] = exc_type.__name__
            entry["stack"] = _locations(traceback.extract_tb(tb))
        return json.dumps(entry, ensure_ascii=False, default=str)


def _locations(frames: traceback.StackSummary) -> str:
    return " < ".join(f"{frame.filename}:{frame.lineno} in {frame.name}"
                      for frame in reversed(frames))
