"""What a notebook call names: update ids (or a result, table or records holding them) and the
content fingerprints a decision covers; and the refusal a missing permission gets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .results import Decisions, Preview, Reverts, StageResult


def ids_of(ids: Any) -> list[int] | None:
    if ids is None:
        return None
    if isinstance(ids, (StageResult, Decisions, Reverts)):
        return ids.ids
    if isinstance(ids, (int, np.integer)):
        return [int(ids)]
    if (shown := shown_of(ids)) is not None:
        return list(shown)
    if isinstance(ids, Preview):
        ids = ids.table
    if isinstance(ids, pd.DataFrame):
        return [int(i) for i in ids["update_id" if "update_id" in ids.columns else "id"]]
    return [int(i) for i in ids]


def shown_of(ids: Any) -> dict[int, str] | None:
    """{update id: content fingerprint} when `ids` is what preview() or updates() returned (a
    table, or records, with an id and a `fingerprint`); None for bare ids."""
    table = ids.table if isinstance(ids, Preview) else ids
    if isinstance(table, pd.DataFrame):
        if "fingerprint" not in table.columns:
            return None
        column = "update_id" if "update_id" in table.columns else "id"
        return {int(pk): str(fp) for pk, fp in zip(table[column], table["fingerprint"])}
    if isinstance(table, (list, tuple)) and table \
            and all(isinstance(r, Mapping) and "fingerprint" in r for r in table):
        return {int(r["update_id"] if "update_id" in r else r["id"]): str(r["fingerprint"])
                for r in table}
    return None


def refuse_permission(message: str) -> None:
    """Refuse as the services do: updates.errors.Refused (a ValidationError) whose code is
    ``permission_denied``, so one ``except ValidationError`` catches every refusal."""
    from updates.errors import PERMISSION_DENIED, Refused

    raise Refused(message, code=PERMISSION_DENIED)

