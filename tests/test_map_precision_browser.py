"""Honest precision on the map itself, in a real browser: a structure placed at its commune's
centre is drawn as a hollow ring (layer points-commune), an exact one as a filled disc."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.conftest import Browser, shot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_console_errors")]


def drawn_ids(page, layer: str) -> set[int]:  # type: ignore[no-untyped-def]
    return set(
        page.evaluate(
            "(layer) => window.ccMap.queryRenderedFeatures({layers: [layer]})"
            ".map((f) => f.properties.id)",
            layer,
        )
    )


def look_at(page, lon: float, lat: float) -> None:  # type: ignore[no-untyped-def]
    page.evaluate(
        "() => { document.body.dataset.ready = '0'; }",
    )
    page.evaluate("([lon, lat]) => window.ccMap.jumpTo({center: [lon, lat], zoom: 16})", [lon, lat])
    wait_idle(page)


def test_commune_level_marker_differs_from_an_exact_one(
    browser: Browser, demo_data: sa.Engine
) -> None:
    with demo_data.begin() as conn:
        # Two located structures far enough apart to be seen alone at zoom 16: one is
        # placed at its commune's centre (as the geocoder does when only the commune is known).
        exact, approx = conn.execute(
            sa.text(
                """
                SELECT a.id AS a, b.id AS b
                  FROM structures a JOIN structures b
                    ON a.id < b.id AND ST_Distance(a.geom::geography, b.geom::geography) > 2000
                 WHERE a.geom IS NOT NULL AND b.geom IS NOT NULL
                   AND a.status = 'active' AND b.status = 'active'
                   -- alone on screen: nothing else drawn under or over them
                   AND NOT EXISTS (SELECT 1 FROM structures o
                                    WHERE o.id NOT IN (a.id, b.id) AND o.status = 'active'
                                      AND (ST_DWithin(o.geom::geography, a.geom::geography, 300)
                                        OR ST_DWithin(o.geom::geography, b.geom::geography, 300)))
                 ORDER BY a.id, b.id LIMIT 1
                """
            )
        ).one()
        conn.execute(
            sa.text(
                "UPDATE structures SET location_precision = "
                "CASE WHEN id = :b THEN 'municipality' ELSE 'provided' END "
                "WHERE id IN (:a, :b)"
            ),
            {"a": exact, "b": approx},
        )
        pos = {
            r.id: (r.lon, r.lat)
            for r in conn.execute(
                sa.text(
                    "SELECT id, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM structures "
                    "WHERE id IN (:a, :b)"
                ),
                {"a": exact, "b": approx},
            )
        }

    page = browser.page()
    page.goto(browser.base + "/carte")
    wait_idle(page)
    # The legend says what the hollow ring means.
    legend = page.locator("#cc-legende-precision").inner_text()
    assert "Position approximative (centre de la commune)" in legend

    look_at(page, *pos[approx])
    assert approx in drawn_ids(page, "points-commune")
    assert approx not in drawn_ids(page, "points")
    shot(page, "precision-commune")

    look_at(page, *pos[exact])
    assert exact in drawn_ids(page, "points")
    assert exact not in drawn_ids(page, "points-commune")

    # The two layers really draw differently: hollow (white fill, coloured ring) vs filled.
    paint = page.evaluate(
        """() => ({
            hollowFill: window.ccMap.getPaintProperty('points-commune', 'circle-color'),
            hollowStroke: window.ccMap.getPaintProperty('points-commune', 'circle-stroke-color'),
            filledFill: window.ccMap.getPaintProperty('points', 'circle-color'),
        })"""
    )
    assert paint["hollowFill"] == "#ffffff"
    assert paint["hollowStroke"] == paint["filledFill"]  # the sector colour, as a ring
    assert paint["filledFill"] != "#ffffff"

    # A click on the ring opens the card, which says the same thing in words.
    look_at(page, *pos[approx])
    box = page.evaluate("([lon, lat]) => window.ccMap.project([lon, lat])", list(pos[approx]))
    canvas = page.locator("#cc-map canvas").bounding_box()
    assert canvas is not None
    page.mouse.click(canvas["x"] + box["x"], canvas["y"] + box["y"])
    page.wait_for_selector("#cc-fiche:not([hidden])")
    assert "centre de la commune" in page.locator("#cc-fiche .cc-precision").inner_text()
