"""Static assets (MapLibre, PMTiles, Swagger UI, Carteco's own scripts): cached and pre-gzipped.

The public map is embedded on partner sites, so the same few files (MapLibre alone is 800 kB)
are fetched by every new visitor. Pages link them with a content hash (`?v=…`): such a URL
never changes meaning, so browsers and CDNs keep it a year without asking again. The gzip
body of each file is made once per process and kept, instead of compressing it again for every
request (GZipMiddleware leaves a response that already has a Content-Encoding alone).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
IMMUTABLE = "public, max-age=31536000, immutable"
# Unversioned URLs (old links, Swagger's own requests): cached a little, then revalidated.
SHORT = "public, max-age=3600"
COMPRESSIBLE = (".js", ".css", ".json", ".svg", ".html", ".map", ".txt")


class Assets(StaticFiles):
    """StaticFiles with content-hashed URLs, long caching and gzip bodies made once."""

    def __init__(self, directory: Path = STATIC_DIR) -> None:
        super().__init__(directory=directory)
        self.root = directory
        self._lock = threading.Lock()
        self._hashes: dict[tuple[str, int], str] = {}
        self._gzipped: dict[tuple[str, int], bytes] = {}

    def url(self, path: str) -> str:
        """`/static/<path>?v=<content hash>` for a file under the static folder."""
        full = self.root / path
        return f"/static/{path}?v={self._hash(str(full), full.stat().st_mtime_ns)}"

    def _hash(self, full_path: str, mtime: int) -> str:
        key = (full_path, mtime)
        with self._lock:
            if key not in self._hashes:
                digest = hashlib.sha256(Path(full_path).read_bytes()).hexdigest()[:12]
                self._hashes[key] = digest
            return self._hashes[key]

    def _gzip(self, full_path: str, mtime: int) -> bytes:
        key = (full_path, mtime)
        with self._lock:
            if key not in self._gzipped:
                self._gzipped[key] = gzip.compress(Path(full_path).read_bytes(), 9, mtime=0)
            return self._gzipped[key]

    def file_response(
        self,
        full_path: os.PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        """The file (or 304), with its cache policy, gzipped from memory when asked."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        path = str(full_path)
        request = Headers(scope=scope)
        version = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))).get("v")
        current = version is not None and version == self._hash(path, stat_result.st_mtime_ns)
        response.headers["Cache-Control"] = IMMUTABLE if current else SHORT
        if (
            response.status_code != 200
            or not path.endswith(COMPRESSIBLE)
            or stat_result.st_size < 1024
            or "gzip" not in request.get("accept-encoding", "")
            or "range" in request
        ):
            return response
        body = self._gzip(path, stat_result.st_mtime_ns)
        headers = {
            k: v
            for k, v in response.headers.items()
            if k in ("etag", "last-modified", "cache-control")
        }
        headers.update({"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
        return Response(body, media_type=response.media_type, headers=headers)


ASSETS = Assets()
