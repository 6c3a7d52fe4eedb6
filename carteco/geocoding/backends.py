"""Geocoding backends behind one small interface: `local` (PostGIS) and `ban` (api-adresse HTTP)."""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import sqlalchemy as sa

from carteco.errors import CartecoError
from carteco.geocoding.engine import GeocodeResult, LocalGeocoder

BACKENDS = ("local", "ban")
RESULT_COLUMNS = (
    "latitude",
    "longitude",
    "result_label",
    "result_score",
    "result_score_next",
    "result_type",
    "result_id",
    "result_housenumber",
    "result_name",
    "result_street",
    "result_postcode",
    "result_city",
    "result_context",
    "result_citycode",
    "result_oldcitycode",
    "result_oldcity",
    "result_status",
)
# result_status values, as api-adresse: a result, none, an empty row, a failed row.
STATUSES = ("ok", "not-found", "skipped", "error")


@dataclass(frozen=True)
class Query:
    """One address to geocode, with optional postcode / INSEE filters."""

    q: str
    postcode: str | None = None
    citycode: str | None = None


class Backend(Protocol):
    """What `carteco geocode` needs from a geocoder."""

    name: str

    def search(self, q: str, limit: int = 5, **filters: Any) -> list[GeocodeResult]:
        """Best answers for one address."""
        ...

    def geocode_batch(self, queries: Sequence[Query]) -> list[GeocodeResult | None]:
        """The best answer for each query, in order (None when nothing matched)."""
        ...


class LocalBackend:
    """The PostGIS engine."""

    name = "local"

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def search(self, q: str, limit: int = 5, **filters: Any) -> list[GeocodeResult]:
        """Best answers for one address."""
        with self.engine.connect() as conn:
            return LocalGeocoder(conn).search(q, limit=limit, **filters)

    def geocode_batch(self, queries: Sequence[Query]) -> list[GeocodeResult | None]:
        """The best answer for each query, on one connection."""
        return [res[0] if res else None for res in self.search_batch(queries, 1)]

    def search_batch(self, queries: Sequence[Query], limit: int = 2) -> list[list[GeocodeResult]]:
        """The `limit` best answers of each query, on one connection, by chunks of 500."""
        out: list[list[GeocodeResult]] = []
        with self.engine.connect() as conn:
            g = LocalGeocoder(conn)
            for start in range(0, len(queries), 500):
                chunk = [
                    {"q": qu.q, "limit": limit, "postcode": qu.postcode, "citycode": qu.citycode}
                    for qu in queries[start : start + 500]
                ]
                out.extend(g.search_many(chunk))
        return out


class BanBackendError(CartecoError, RuntimeError):
    """The remote api-adresse service failed after the retries."""

    kind = "internal"


class BanBackend:
    """Any api-adresse compatible service (public BAN API, addok, Carteco's own /ban)."""

    name = "ban"

    def __init__(
        self,
        base_url: str = "https://api-adresse.data.gouv.fr",
        rate_limit: float = 40.0,
        timeout: float = 30.0,
        retries: int = 3,
        batch_size: int = 1000,
        client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # The public API allows 50 requests/s per IP: stay under it by default.
        self.min_interval = 1.0 / rate_limit if rate_limit > 0 else 0.0
        self.retries = retries
        self.batch_size = batch_size
        self.client = client or httpx.Client(timeout=timeout)
        self._lock = threading.Lock()
        self._next_at = 0.0

    def _wait_turn(self) -> None:
        with self._lock:
            now = time.monotonic()
            delay = self._next_at - now
            self._next_at = max(now, self._next_at) + self.min_interval
        if delay > 0:
            time.sleep(delay)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            self._wait_turn()
            try:
                r = self.client.request(method, self.base_url + path, **kwargs)
            except httpx.TransportError as exc:  # timeouts, refused connections
                last = exc
            else:
                if r.status_code == 429 or r.status_code >= 500:
                    last = BanBackendError(f"{path} : HTTP {r.status_code}")
                    retry_after = r.headers.get("Retry-After", "")
                    if retry_after.isdigit():
                        time.sleep(min(float(retry_after), 30.0))
                else:
                    r.raise_for_status()
                    return r
            time.sleep(min(0.25 * 2**attempt, 5.0))
        raise BanBackendError(
            f"{self.base_url}{path} : échec après {self.retries + 1} essais ({last})"
        )

    def search(self, q: str, limit: int = 5, **filters: Any) -> list[GeocodeResult]:
        """GET /search/ and read the GeoJSON answer."""
        params = {"q": q, "limit": limit, **{k: v for k, v in filters.items() if v is not None}}
        body = self._request("GET", "/search/", params=params).json()
        return [_from_feature(f) for f in body.get("features", [])]

    def reverse(self, lon: float, lat: float, limit: int = 1) -> list[GeocodeResult]:
        """GET /reverse/."""
        body = self._request(
            "GET", "/reverse/", params={"lon": lon, "lat": lat, "limit": limit}
        ).json()
        return [_from_feature(f) for f in body.get("features", [])]

    def geocode_batch(self, queries: Sequence[Query]) -> list[GeocodeResult | None]:
        """POST /search/csv/ by chunks of `batch_size` rows."""
        out: list[GeocodeResult | None] = []
        for start in range(0, len(queries), self.batch_size):
            out.extend(self._csv_chunk(queries[start : start + self.batch_size]))
        return out

    def _csv_chunk(self, chunk: Sequence[Query]) -> list[GeocodeResult | None]:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["q", "postcode", "citycode"])
        for qu in chunk:
            w.writerow([qu.q, qu.postcode or "", qu.citycode or ""])
        data: dict[str, Any] = {"columns": ["q"]}
        if any(qu.postcode for qu in chunk):
            data["postcode"] = "postcode"
        if any(qu.citycode for qu in chunk):
            data["citycode"] = "citycode"
        r = self._request(
            "POST",
            "/search/csv/",
            files={"data": ("batch.csv", buf.getvalue().encode("utf-8"), "text/csv")},
            data=data,
        )
        rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
        if len(rows) != len(chunk):
            raise BanBackendError(
                f"/search/csv/ a rendu {len(rows)} lignes pour {len(chunk)} envoyées"
            )
        return [_from_csv_row(row) for row in rows]


def _from_feature(f: dict[str, Any]) -> GeocodeResult:
    p = f.get("properties", {})
    lon, lat = f["geometry"]["coordinates"][:2]
    return GeocodeResult(
        lon=float(lon),
        lat=float(lat),
        label=p.get("label", ""),
        score=float(p.get("score", 0)),
        type=p.get("type", "housenumber"),
        id=str(p.get("id", "")),
        name=p.get("name", ""),
        postcode=p.get("postcode"),
        citycode=p.get("citycode", ""),
        city=p.get("city", ""),
        context=p.get("context", ""),
        housenumber=p.get("housenumber"),
        street=p.get("street"),
        distance=p.get("distance"),
    )


def _from_csv_row(row: dict[str, str]) -> GeocodeResult | None:
    if not row.get("latitude") or not row.get("result_score"):
        return None
    return GeocodeResult(
        lon=float(row["longitude"]),
        lat=float(row["latitude"]),
        label=row.get("result_label", ""),
        score=float(row["result_score"]),
        type=row.get("result_type") or "housenumber",
        id=row.get("result_id", ""),
        name=row.get("result_name", ""),
        postcode=row.get("result_postcode") or None,
        citycode=row.get("result_citycode", ""),
        city=row.get("result_city", ""),
        context=row.get("result_context", ""),
        housenumber=row.get("result_housenumber") or None,
        street=row.get("result_street") or None,
    )


def result_columns(
    r: GeocodeResult | None, score_next: float | None = None, status: str | None = None
) -> list[str]:
    """The api-adresse CSV columns appended for one result (empty strings when none)."""
    if status is None:
        status = "ok" if r is not None else "not-found"
    if r is None:
        return [""] * (len(RESULT_COLUMNS) - 1) + [status]
    return [
        f"{r.lat:.6f}",
        f"{r.lon:.6f}",
        r.label,
        f"{r.score:.4f}",
        f"{score_next:.4f}" if score_next is not None else "",
        r.type,
        r.id,
        r.housenumber or "",
        r.name,
        r.street or "",
        r.postcode or "",
        r.city,
        r.context,
        r.citycode,
        r.oldcitycode or "",
        r.oldcity or "",
        status,
    ]


def make_backend(name: str, engine: sa.Engine, url: str | None = None) -> Backend:
    """The backend called `name` ("local" or "ban", the latter at `url`)."""
    if name == "local":
        return LocalBackend(engine)
    if name == "ban":
        return BanBackend(url) if url else BanBackend()
    raise ValueError(f"moteur de géocodage inconnu : {name!r} (attendu : {', '.join(BACKENDS)})")
