"""The admin: thin forms, lists and actions over the services in workflow.py, sending.py, ….

One module per area, so the file list reads as the admin's structure.
"""

from . import connections, dashboard, updates  # noqa: F401
from . import imports, mappings  # noqa: F401
from . import alerts  # noqa: F401
from . import privacy  # noqa: F401
from . import bulk  # noqa: F401
from . import logins  # noqa: F401
