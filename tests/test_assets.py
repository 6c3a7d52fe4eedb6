"""Static assets: content-hashed URLs cached for a year, gzip made once, 304 and ranges kept."""

from __future__ import annotations

import re

from api.assets import STATIC_DIR


def test_pages_link_hashed_assets_cached_for_a_year(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/carte").text
    m = re.search(r'src="(/static/vendor/maplibre-gl/maplibre-gl\.js\?v=([0-9a-f]{12}))"', page)
    assert m, "the map page links MapLibre with its content hash"
    url = m.group(1)
    source = (STATIC_DIR / "vendor/maplibre-gl/maplibre-gl.js").read_bytes()
    r = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip" and "Accept-Encoding" in r.headers["vary"]
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.content == source  # httpx inflates: the same bytes as the file
    assert int(r.headers["content-length"]) < len(source) / 2
    # Revalidation still works, with the same cache policy.
    again = client.get(url, headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and "immutable" in again.headers["cache-control"]
    # A link without the hash, or with an old one, is cached briefly only.
    for other in ("/static/vendor/maplibre-gl/maplibre-gl.js", url[:-3] + "000"):
        assert client.get(other).headers["cache-control"] == "public, max-age=3600"
    # Without gzip, or for a byte range, the file itself.
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == source
    part = client.get(url, headers={"Range": "bytes=0-99", "Accept-Encoding": "gzip"})
    assert part.status_code == 206 and part.content == source[:100]
    # The API docs use the same hashed URLs; unknown files are 404.
    assert re.search(r"swagger-ui-bundle\.js\?v=[0-9a-f]{12}", client.get("/docs").text)
    assert client.get("/static/nulle-part.js").status_code == 404
