"""The notebook face: ProfileOps from Jupyter, beside the admin and the commands.

Stage from a DataFrame, review, approve, send and look at the results — through the services the
admin, the import and the commands run, as a named user. ``profileops.notebook`` sets Django up
and hands out sessions (``connect``, ``as_user``, ``run``); the rooms here are the session's:
thread (the loop-free ORM thread), results (what comes back), cells (DataFrame cells in),
selection (ids and fingerprints named), base, staging, deciding, sending, target_loop,
listings, usage, session. Needs the ``[notebook]`` extra (pandas).
"""

INSTALL_HINT = "pip install -e .[notebook]"

try:
    import numpy  # noqa: F401
    import pandas  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"profileops.notebook needs pandas (missing: {error.name}); install the notebook extra: "
        f"{INSTALL_HINT}") from error
