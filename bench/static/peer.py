"""The peer: Starlette's StaticFiles behind GZipMiddleware (gzip per request, no cache policy).

This is how Carteco served its assets before `api/assets.py`, and what a FastAPI app gets from
`app.mount("/static", StaticFiles(...))` plus `GZipMiddleware`.
"""

from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from api.assets import STATIC_DIR

app = Starlette(routes=[Mount("/static", StaticFiles(directory=STATIC_DIR))])
app.add_middleware(GZipMiddleware, minimum_size=1024)
