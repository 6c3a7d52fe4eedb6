"""The offline basemap in a real browser (Chromium, outside requests blocked): place names drawn
with Carteco's own glyphs, clusters that never overlap, a phone's first view, readable charts,
a PMTiles archive read from a second origin, and the screenshots linked from the README.
"""

from __future__ import annotations

import http.server
import itertools
import math
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from carteco.settings import Settings
from tests.conftest import ARTIFACTS, ROOT, Browser, free_port, scalar, wait_attr, wait_idle

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "docs" / "screenshots"
MONTREUIL = (2.4417, 48.8611)
IDF = (1.44, 48.12, 3.56, 49.24)
PAGES = {
    "carte": "/carte",
    "embed-93": "/embed?territoire=departement:93",
    "territoire-93": "/territoires/departement/93",
}
SIZES = {"bureau": (1400, 900), "telephone": (390, 844)}


@pytest.fixture(scope="module")
def browser(live_server: str, demo_data: sa.Engine) -> Iterator[Browser]:
    """One Chromium for the module."""
    b = Browser(live_server)
    yield b
    b.close()


@pytest.fixture(autouse=True)
def no_console_errors(browser: Browser) -> Iterator[None]:
    """Any console or page error, or any request leaving loopback, fails the test."""
    browser.errors.clear()
    browser.blocked.clear()
    yield
    assert not browser.errors, browser.errors
    assert not browser.blocked, browser.blocked


def save(page, name: str, full_page: bool = False) -> None:  # type: ignore[no-untyped-def]
    """A screenshot in test-artifacts/ and, for the README, in docs/screenshots/."""
    ARTIFACTS.mkdir(exist_ok=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    shutil.copyfile(path, SCREENSHOTS / f"{name}.png")


def names_rendered(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.evaluate(
        "() => window.ccMap.queryRenderedFeatures({layers: ['noms-communes']})"
        ".map(f => f.properties.name)"
    )


def test_commune_names_are_drawn_offline(browser: Browser) -> None:
    page = browser.page(1400, 900)
    glyphs: list[str] = []
    page.on("request", lambda r: glyphs.append(r.url) if "/carte/glyphs/" in r.url else None)
    lon, lat = MONTREUIL
    page.goto(f"{browser.base}/carte?z=11&lat={lat}&lon={lon}")
    wait_idle(page)
    names = names_rendered(page)
    # Commune-name symbols, drawn with the glyphs Carteco serves (Noto Sans, built offline).
    assert "Montreuil" in names and "Vincennes" in names, names
    assert any("Noto%20Sans%20Regular/0-255.pbf" in u for u in glyphs), glyphs
    # Paris arrondissements and stations appear closer in.
    page.evaluate("() => window.ccMap.jumpTo({center: [2.3470, 48.8590], zoom: 14})")
    # data-ready still says "1" from the first view: wait for the new view's labels to be
    # drawn (their tiles may take a while on a loaded machine), not for a fixed time.
    page.wait_for_function(
        "() => window.ccMap.queryRenderedFeatures({layers: ['noms-communes']})"
        ".some(f => /arrondissement|^Paris/i.test(f.properties.name))",
        timeout=90_000,
    )
    try:
        page.wait_for_function(
            "() => window.ccMap.queryRenderedFeatures({layers: ['gares-noms']}).length > 0",
            timeout=90_000,
        )
    except PlaywrightTimeout:
        raise AssertionError("no station label at zoom 14 in central Paris") from None


def test_screenshots_desktop_and_phone(browser: Browser) -> None:
    for (size, (w, h)), (name, path) in itertools.product(SIZES.items(), PAGES.items()):
        page = browser.page(w, h)
        page.goto(browser.base + path)
        wait_idle(page)
        wait_attr(page, "data-rendered", lambda v: int(v) > 0)
        if name == "territoire-93":
            page.wait_for_selector("svg text.etiquette")
        # The territory page whole: its charts are below the map.
        save(page, f"{name}-{size}", full_page=name == "territoire-93")
        page.context.close()


def test_phone_first_view_fits_the_region_and_the_territory(browser: Browser) -> None:
    for path, box in (("/carte", IDF), ("/embed?territoire=departement:93", None)):
        page = browser.page(390, 844)
        page.goto(browser.base + path)
        wait_idle(page)
        b = page.evaluate(
            "() => { const b = window.ccMap.getBounds();"
            " return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]; }"
        )
        if box is None:
            box = page.evaluate(
                "() => JSON.parse(document.getElementById('cc-config').textContent).locked.bbox"
            )
        # The whole territory is in view: its east and west are not cut.
        assert b[0] <= box[0] and b[2] >= box[2] and b[1] <= box[1] and b[3] >= box[3], (path, b)
        page.context.close()


def _symbols(page) -> list[tuple[float, float, float]]:  # type: ignore[no-untyped-def]
    """Screen x, y and radius (stroke included) of every drawn cluster and structure symbol."""
    return page.evaluate(
        """() => {
          const m = window.ccMap, seen = new Set(), out = [];
          const layers = ['clusters', 'points', 'points-commune'];
          for (const f of m.queryRenderedFeatures({layers})) {
            const k = f.geometry.coordinates.join(',');
            if (seen.has(k)) continue;
            seen.add(k);
            const p = m.project(f.geometry.coordinates), n = f.properties.count;
            const z = m.getZoom();
            const r = n > 1 ? Math.min(14.5, 9 + 2 * Math.log10(n)) + 1.5
                            : 4 + 3 * Math.min(1, Math.max(0, (z - 6) / 8)) + 1.2;
            out.push([p.x, p.y, r]);
          }
          return out;
        }"""
    )


def test_clusters_never_overlap(browser: Browser) -> None:
    page = browser.page(1400, 900)
    for z, (lon, lat) in ((8.0, (2.42, 48.80)), (10.0, (2.35, 48.86)), (12.0, (2.35, 48.86))):
        page.goto(f"{browser.base}/carte?z={z}&lat={lat}&lon={lon}")
        wait_idle(page)
        symbols = _symbols(page)
        assert len(symbols) > 5, (z, symbols)
        overlaps = [
            (a, b)
            for a, b in itertools.combinations(symbols, 2)
            if math.hypot(a[0] - b[0], a[1] - b[1]) < a[2] + b[2] - 0.75
        ]
        assert not overlaps, (z, overlaps[:5])
        if z == 10.0:
            save(page, "clusters-paris")


def test_chart_labels_do_not_touch_bars_or_values(browser: Browser) -> None:
    for w, h in SIZES.values():
        _check_charts(browser, w, h)


def _check_charts(browser: Browser, w: int, h: int) -> None:
    page = browser.page(w, h)
    page.goto(browser.base + "/territoires/departement/93")
    page.wait_for_selector("svg text.etiquette")
    # Nothing wider than the screen (a phone scrolls the table, not the page).
    assert page.evaluate("() => document.documentElement.scrollWidth") <= w
    # Type readable on a phone as on a desktop: at least 9 px high once the SVG is scaled.
    heights = page.evaluate(
        "() => Array.from(document.querySelectorAll('svg text')).map("
        "t => t.getBoundingClientRect().height)"
    )
    assert heights and min(heights) >= 9, (w, heights)
    boxes = page.evaluate(
        """() => Array.from(document.querySelectorAll('svg g.barre')).map(g => {
          const r = (el) => { if (!el) return null; const b = el.getBoundingClientRect();
            return [b.left, b.top, b.right, b.bottom]; };
          return {label: r(g.querySelector('text.etiquette')), bar: r(g.querySelector('rect')),
                  value: r(g.querySelector('text.valeur')),
                  svg: r(g.ownerSVGElement)};
        })"""
    )
    assert boxes

    def apart(a, b) -> bool:  # type: ignore[no-untyped-def]
        return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]

    everything = []
    for row in boxes:
        parts = [p for p in (row["label"], row["bar"], row["value"]) if p]
        for a, b in itertools.combinations(parts, 2):
            assert apart(a, b), row
        for p in parts:  # nothing drawn outside the chart
            assert p[2] <= row["svg"][2] + 0.5, row
        everything.extend(parts)
    # Nor across rows.
    for a, b in itertools.combinations(everything, 2):
        assert apart(a, b) or a == b, (a, b)
    page.context.close()


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static server with byte ranges and CORS, as a CDN serving a PMTiles archive."""

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Headers", "Range, If-Match")
        self.send_header("Access-Control-Expose-Headers", "ETag, Content-Range, Content-Length")
        super().end_headers()

    def do_OPTIONS(self) -> None:  # noqa: N802
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        path = Path(self.translate_path(self.path))
        rng = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        if rng:
            start = int(rng.group(1))
            end = min(int(rng.group(2)) if rng.group(2) else len(data) - 1, len(data) - 1)
            body = data[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def cdn(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """A second origin (another loopback port) serving `folder`, and the paths it was asked."""

    def handler(*args, **kwargs):  # type: ignore[no-untyped-def]
        return _RangeHandler(*args, directory=str(folder), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.hits  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def app_server(settings: Settings) -> Iterator[str]:
    """Carteco with other settings, served by uvicorn on loopback."""
    import httpx
    import uvicorn

    from api.factory import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(base + "/health", timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


def test_map_reads_a_pmtiles_archive_from_a_second_origin(
    browser: Browser, demo_data: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    from tiles.export import export_pmtiles

    archive = tmp_path / "cdn" / "carte.pmtiles"
    report = export_pmtiles(demo_data, archive, 5, 12)
    assert report.bounds[0] > 1.0 and report.bounds[2] < 4.0  # the data's extent, not France
    (located,) = scalar(demo_data, "SELECT count(*) FROM structures WHERE geom IS NOT NULL")
    with cdn(archive.parent) as (origin, hits):
        url = origin + "/carte.pmtiles"
        with app_server(settings.model_copy(update={"map_pmtiles_url": url})) as base:
            page = browser.page(1400, 900)
            response = page.goto(base + "/carte")
            assert response is not None
            csp = response.headers["content-security-policy"]
            assert re.search(r"connect-src 'self'[^;]* " + re.escape(origin), csp), csp
            wait_idle(page)
            wait_attr(page, "data-rendered", lambda v: int(v) == located)
            lon, lat = MONTREUIL
            page.evaluate(f"() => window.ccMap.jumpTo({{center: [{lon}, {lat}], zoom: 11}})")
            # The new view's names, once its basemap tiles are read from the archive.
            page.wait_for_function(
                "() => window.ccMap.queryRenderedFeatures({layers: ['noms-communes']})"
                ".some(f => f.properties.name === 'Montreuil')",
                timeout=90_000,
            )
            sources = page.evaluate("() => Object.keys(window.ccMap.getStyle().sources)")
            assert "fond" in sources  # the basemap too comes from the archive
    assert hits and all(h == "/carte.pmtiles" for h in hits)
