"""The app's one date format, for everything Django itself renders (lists, read-only fields,
history): 2026-12-07 01:53:16 UTC, as the update page's timeline writes it
(updates/admin/timeline.py utc_text), instead of English's "Dec. 7, 2026, 1:53 a.m.".
Used through settings.FORMAT_MODULE_PATH. Input formats are Django's (unchanged)."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
THOUSAND_SEPARATOR = ","
DECIMAL_SEPARATOR = "."
NUMBER_GROUPING = 3
