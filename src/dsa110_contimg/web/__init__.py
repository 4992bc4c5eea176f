"""The HTTP API of the pipeline (``dsa110-contimg serve``): FastAPI, read-only.

A layer between the CLI and the services: it imports services (health
checks), state (read-only queries, figures, the operator's actions) and the
science packages (light curves, variability), and nothing imports it but the
CLI. The modules:

- `web.app`: `create_app`, the application and its middleware;
- `web.api`: the JSON endpoints under ``/api/`` (`web.api.pipeline`,
  `web.api.products`, `web.api.science`, `web.api.actions`);
- `web.models`: the typed responses (fields from `dsa110_contimg.tables`
  where a table is declared);
- `web.errors`: the one table from exception class to HTTP status;
- `web.security`: the operator token, safe product paths, body-size and
  rate limits;
- `web.prometheus`: the ``/metrics`` exposition.

FastAPI, uvicorn and prometheus-client are the ``api`` extra
(``pip install 'dsa110-contimg[api]'``).
"""

from dsa110_contimg.web.app import create_app

__all__ = ["create_app"]
