"""The notebook session: one named person, every entry point of the notebook face.

Each room adds its calls — staging, deciding, sending, the loop with Target, listings, usage —
and every call runs the services the admin, the import and the commands run, as this user, on
the ORM thread (thread.py).
"""

from __future__ import annotations

from .deciding import Deciding
from .listings import Listings
from .sending import Sending
from .staging import Staging
from .target_loop import TargetLoop
from .thread import orm
from .usage import Usage


class Session(Staging, Deciding, Sending, TargetLoop, Listings, Usage):
    """Acting as one named user. Create with `notebook.as_user(name)` or `notebook.connect`."""

    def __repr__(self) -> str:
        return f"<ProfileOps notebook session as {self.username!r}>"

    def as_user(self, username: str) -> Session:
        """Another person, same database. Example: ``supervisor = nb.as_user("bob")``."""
        return session_for(username)


def session_for(username: str) -> Session:
    """A session acting as `username`, checked now (not at the first action) to exist and be
    active. Django must be set up (profileops.notebook.setup)."""
    session = Session(username)
    orm.run(session._user)
    return session
