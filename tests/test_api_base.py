"""The minimal service: health, the map page and its data, the one error shape."""

from tests.conftest import assert_problem


def test_health_and_map(client, demo_registry) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["structures"] > 600
    r = client.get("/carte")
    assert r.status_code == 200 and "maplibre-gl.js" in r.text and 'lang="fr"' in r.text
    assert "cdn" not in r.text.lower()
    r = client.get("/static/vendor/maplibre-gl/maplibre-gl.js")
    assert r.status_code == 200 and len(r.content) > 500_000


def test_unknown_route_is_a_problem(client) -> None:
    assert_problem(client.get("/nulle-part"), 404)
