"""Every public and staff HTML page renders offline: nothing is fetched from a CDN or any
host but Carteco itself (Chromium, outside requests blocked and recorded)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Browser

pytestmark = pytest.mark.browser

# The signed-in moderation pages (the queue, a proposal, the log) are opened the same way,
# outside requests blocked, by tests/test_contributions_browser.py.
PAGES = (
    "/",
    "/carte",
    "/embed?territoire=departement:93",
    "/carte/integrer",
    "/territoires/departement/93",
    "/territoires/departement/93/panorama",
    "/diagnostics/foncier/93",
    "/diagnostics/foncier/94",
    "/territories/departement/93/panorama?f=html",
    "/territoires/commune/93048",
    "/embed?secteur=alimentation",
    "/carte?secteur=numerique",
    "/collections",
    "/collections/structures",
    "/conformance?f=html",
    "/tileMatrixSets?f=html",
    "/collections/structures/items?f=html&limit=5",
    "/moderation",
    "/moderation/journal",
    "/contribuer/fiche",
    "/collections/structures/items/1?f=html",
    "/collections/structures/queryables?f=html",
    "/besoins-fonciers",
    "/docs",
    "/territoires/departement/99",
)


def test_no_page_loads_anything_from_another_host(live_server: str, demo_data: sa.Engine) -> None:
    browser = Browser(live_server)
    try:
        for path in PAGES:
            page = browser.page()
            page.goto(live_server + path, wait_until="networkidle", timeout=90_000)
            page.context.close()
        assert not browser.blocked, f"requests to other hosts: {browser.blocked}"
    finally:
        browser.close()


def test_swagger_ui_calls_no_validator(client: Any) -> None:
    """Served under a public host name, Swagger UI would fetch a badge from validator.swagger.io
    (it skips that only on localhost, which the browser test above uses)."""
    page = client.get("/docs").text
    assert '"validatorUrl": null' in page
    assert "swagger.io" not in page and "cdn.jsdelivr" not in page
