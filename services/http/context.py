"""What the HTTP route modules are built from: the services of one process, assembled by runtime.build_api.

Each route module (imports, tus, people, metrics, web) exposes
``routes(ctx) -> list[BaseRoute]`` and reads only what it needs from here; a
field a process does not run (the upload-service alone has no query lane's
workers, a test builds what it tests) is None and its routes are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soulprint.services.auth import Authenticator
    from soulprint.services.db import Database
    from soulprint.services.http.health import Health
    from soulprint.services.query import QueryService
    from soulprint.settings import Settings


@dataclass
class ApiContext:
    settings: "Settings"
    db: "Database"
    auth: "Authenticator"
    health: "Health"
    query: "QueryService | None" = None
    imports: Any = None   # services/imports.ImportService: store an upload, create and publish its job
    uploads: Any = None   # the resumable (tus) uploads' store, when its module provides one
    erasure: Any = None   # services/erasure.Erasure: delete a person, with a receipt
    metrics: Any = None   # services/metrics.Metrics: the Prometheus registry
