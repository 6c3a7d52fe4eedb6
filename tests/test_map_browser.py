"""The public map in a real browser: headless Chromium (Debian) driven by Playwright, offline.

Every request that is not to 127.0.0.1 is aborted (and counted); any console error or page
error fails the test. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from tests.conftest import Browser, scalar, shot, wait_attr, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_console_errors")]


@contextmanager
def partner_site(html: str) -> Iterator[str]:
    """A partner's page served from another origin (another loopback port)."""
    body = html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/partenaire.html"
    finally:
        server.shutdown()
        server.server_close()


def test_map_clusters_legend_filter_and_list(browser: Browser, demo_data: sa.Engine) -> None:
    page = browser.page()
    page.goto(browser.base + "/carte")
    wait_idle(page)
    rendered = int(wait_attr(page, "data-rendered", lambda v: int(v) > 0))
    listed = int(wait_attr(page, "data-listed", lambda v: int(v) > 0))
    (located,) = scalar(demo_data, "SELECT count(*) FROM structures WHERE geom IS NOT NULL")
    # The default view frames Île-de-France: every located demo structure is drawn.
    assert rendered == located and listed == located
    n_clusters = page.evaluate(
        "() => window.ccMap.queryRenderedFeatures({layers: ['clusters']}).length"
    )
    assert n_clusters > 0
    assert page.locator(".cc-etiquette").count() > 0  # HTML count labels, no glyphs
    legend = page.locator("#cc-legende li").all_inner_texts()
    assert "Numérique" in legend and "Insertion par l'activité économique" in legend
    shot(page, "carte")

    # A sector filter: the URL, the tiles, the rendered count and the list all follow.
    page.select_option("#cc-secteur", "alimentation")
    assert re.search(r"[?&]secteur=alimentation", page.url)
    wait_idle(page)
    (n_alim,) = scalar(
        demo_data,
        "SELECT count(*) FROM structures WHERE geom IS NOT NULL "
        "AND EXISTS (SELECT 1 FROM unnest(sectors) x WHERE x LIKE 'alimentation%')",
    )
    assert 0 < n_alim < located
    wait_attr(page, "data-rendered", lambda v: int(v) == n_alim)
    wait_attr(page, "data-listed", lambda v: int(v) == n_alim)
    items = page.locator("#cc-liste li button")
    assert items.count() == n_alim
    assert all(
        "ouvrir la fiche" in (items.nth(i).get_attribute("aria-label") or "")
        for i in range(items.count())
    )
    # Keyboard navigation in the list.
    items.nth(0).focus()
    page.keyboard.press("ArrowDown")
    assert page.evaluate("() => document.activeElement.dataset.id") == items.nth(1).get_attribute(
        "data-id"
    )
    page.keyboard.press("Enter")
    page.wait_for_selector("#cc-fiche:not([hidden])")
    assert "fiche=" in page.url
    shot(page, "carte-filtre-liste")

    # The shared URL restores the same filter.
    page2 = browser.page()
    page2.goto(page.url)
    wait_idle(page2)
    wait_attr(page2, "data-rendered", lambda v: int(v) == n_alim)
    assert page2.input_value("#cc-secteur") == "alimentation"
    page2.wait_for_selector("#cc-fiche:not([hidden])")


def test_click_point_opens_card(browser: Browser, demo_data: sa.Engine) -> None:
    sid, name, lon, lat = scalar(
        demo_data,
        "SELECT id, name, ST_X(geom), ST_Y(geom) FROM structures WHERE geom IS NOT NULL "
        "AND commune_code = '93048' ORDER BY id LIMIT 1",
    )
    page = browser.page()
    page.goto(f"{browser.base}/carte?lon={lon}&lat={lat}&z=17")
    wait_idle(page)
    wait_attr(page, "data-rendered", lambda v: int(v) >= 1)
    box = page.locator("#cc-map").bounding_box()
    assert box
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#cc-fiche:not([hidden])")
    card = page.inner_text("#cc-fiche")
    assert name in card
    assert "Localisation :" in card
    # The empty mailto: became the moderated forms (carteco/contribuer.js).
    assert page.locator("#cc-fiche .cc-proposer button").count() == 2
    assert f"fiche={sid}" in page.url
    shot(page, "fiche")
    page.keyboard.press("Escape")
    page.wait_for_selector("#cc-fiche", state="hidden")


def test_search_finds_a_commune_and_a_structure(browser: Browser) -> None:
    page = browser.page()
    page.goto(browser.base + "/carte")
    wait_idle(page)
    page.fill("#cc-q", "Montreuil")
    page.wait_for_selector("#cc-resultats li")
    assert "Montreuil (Commune)" in page.inner_text("#cc-resultats")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.ccMap.getZoom() > 11", timeout=45_000)
    page.fill("#cc-q", "croix rouge")
    page.wait_for_selector("#cc-resultats li >> text=structure")
    shot(page, "recherche")


def test_embed_stays_in_its_territory(browser: Browser, demo_data: sa.Engine) -> None:
    (n93,) = scalar(
        demo_data,
        "SELECT count(*) FROM structures WHERE geom IS NOT NULL AND departement_code = '93'",
    )
    w, s, e, n = scalar(
        demo_data,
        "SELECT ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b) FROM "
        "(SELECT geom::box2d b FROM territories WHERE level = 'departement' AND code = '93') t",
    )
    page = browser.page(800, 600)
    page.goto(browser.base + "/embed?territoire=departement:93")
    wait_idle(page)
    assert page.locator("header.site").count() == 0  # no page chrome
    wait_attr(page, "data-listed", lambda v: int(v) == n93)
    wait_attr(page, "data-rendered", lambda v: int(v) == n93)
    shot(page, "embed-93")
    # Panning away is clamped to the territory (15 % margin).
    page.evaluate("() => window.ccMap.jumpTo({center: [1.5, 49.5], zoom: 12})")
    page.wait_for_timeout(300)
    lon, lat = page.evaluate("() => window.ccMap.getCenter().toArray()")
    dx, dy = (e - w) * 0.16, (n - s) * 0.16
    assert w - dx <= lon <= e + dx and s - dy <= lat <= n + dy
    shot(page, "embed-93-bord")

    # A sector preset on top of the lock.
    page = browser.page(800, 600)
    page.goto(browser.base + "/embed?territoire=departement:93&secteur=insertion")
    wait_idle(page)
    (n93i,) = scalar(
        demo_data,
        "SELECT count(*) FROM structures WHERE geom IS NOT NULL AND departement_code = '93' "
        "AND EXISTS (SELECT 1 FROM unnest(sectors) x WHERE x LIKE 'insertion%')",
    )
    wait_attr(page, "data-listed", lambda v: int(v) == n93i)
    assert page.input_value("#cc-secteur") == "insertion"


def test_embed_in_an_iframe_and_snippet_generator(browser: Browser) -> None:
    page = browser.page()
    page.goto(browser.base + "/carte/integrer")
    page.select_option("#i-territoire", "departement:93")
    code = page.input_value("#i-code")
    assert "<iframe" in code and "/embed?territoire=departement%3A93" in code
    shot(page, "integrer")
    # A partner page (another origin) pasting the snippet: the embed loads inside the iframe.
    html = "<!doctype html><title>Partenaire</title><h1>Site partenaire</h1>" + code
    with partner_site(html) as partner_url:
        partner = browser.page()
        partner.goto(partner_url)
        frame = partner.frame_locator("iframe")
        frame.locator('body[data-ready="1"]').wait_for(state="attached", timeout=90_000)
        assert frame.locator("#cc-legende li").count() > 0
        assert frame.locator("#cc-territoire").count() == 0  # territory-locked
        shot(partner, "iframe-partenaire")


def test_phone_and_collectivite_view(browser: Browser) -> None:
    page = browser.page(390, 800)
    page.goto(browser.base + "/carte")
    wait_idle(page)
    assert page.is_visible("#cc-toggle")
    page.click("#cc-toggle")
    assert page.is_visible("#cc-secteur")
    shot(page, "telephone")

    page = browser.page()
    page.goto(browser.base + "/territoires/commune/93048")
    wait_idle(page)
    assert page.locator("svg rect").count() >= 2
    # GeoPackage in CRS84 and in Lambert-93 (what the collectivité's GIS works in).
    assert page.locator("a:has-text('GeoPackage')").count() == 2
    assert page.locator("a:has-text('GeoPackage Lambert-93')").count() == 1
    shot(page, "collectivite")


def test_map_reads_a_pmtiles_archive(browser: Browser, demo_data: sa.Engine, settings) -> None:
    """With map_pmtiles_url set, the map draws from the exported archive, not live tiles."""
    import uvicorn

    from api.factory import create_app
    from tests.conftest import free_port
    from tiles.export import export_pmtiles

    (settings.data_dir / "tiles").mkdir(parents=True, exist_ok=True)
    report = export_pmtiles(
        demo_data, settings.data_dir / "tiles" / "essai.pmtiles", 0, 8, ("structures",)
    )
    assert report.tiles > 0
    static = settings.model_copy(update={"map_pmtiles_url": "/tiles/essai.pmtiles"})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(static), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
        page = browser.page()
        live_tiles: list[str] = []
        page.on(
            "request",
            lambda r: (
                live_tiles.append(r.url) if "/collections/structures/tiles/" in r.url else None
            ),
        )
        page.goto(f"http://127.0.0.1:{port}/carte")
        wait_idle(page)
        (located,) = scalar(demo_data, "SELECT count(*) FROM structures WHERE geom IS NOT NULL")
        wait_attr(page, "data-rendered", lambda v: int(v) == located)
        assert not live_tiles
        shot(page, "pmtiles")
        # A filter the archive cannot apply: the map switches to the live, filtered tiles…
        (n_alim,) = scalar(
            demo_data,
            "SELECT count(*) FROM structures WHERE geom IS NOT NULL "
            "AND EXISTS (SELECT 1 FROM unnest(sectors) x WHERE x LIKE 'alimentation%')",
        )
        page.select_option("#cc-secteur", "alimentation")
        wait_idle(page)
        wait_attr(page, "data-rendered", lambda v: int(v) == n_alim)
        assert live_tiles and all("secteur=alimentation" in u for u in live_tiles)
        # …and back to the archive when the filter is cleared.
        asked = len(live_tiles)
        page.select_option("#cc-secteur", "")
        wait_idle(page)
        wait_attr(page, "data-rendered", lambda v: int(v) == located)
        assert len(live_tiles) == asked
    finally:
        server.should_exit = True
        thread.join(10)
