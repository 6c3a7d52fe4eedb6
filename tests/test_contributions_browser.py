"""The living registry in a real Chromium (offline): a visitor proposes, a moderator decides.

A visitor proposes a structure from the 93 embed and gets the acknowledgement by real SMTP
(aiosmtpd); a moderator logs in, drags the point, approves; the structure is then in the items,
in the tiles and on the map. A proposed change that is rejected leaves the registry identical;
a self-update link works once signed, and is refused expired or revoked. Screenshots go to
docs/screenshots/ (the README's "Modération" section shows them).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from carteco import accounts, editlinks
from carteco.settings import Settings
from tests.conftest import free_port
from tests.contrib_support import Inbox, smtp_server
from tests.test_map_browser import Browser, wait_attr, wait_idle

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
SECRET = "secret-navigateur-0123456789"
PASSWORD = "mot de passe de la modératrice"
CHECKSUM = "SELECT md5(string_agg(s::text, '' ORDER BY id)) FROM structures s"


@pytest.fixture(scope="module")
def stack(demo_data: sa.Engine, settings: Settings) -> Iterator[dict[str, Any]]:
    """The app served by uvicorn with SMTP to a local aiosmtpd, a moderator and an admin."""
    import uvicorn

    from api.factory import create_app

    with demo_data.begin() as conn:
        conn.execute(sa.text("TRUNCATE proposals, mail_outbox, login_failures CASCADE"))
        conn.execute(sa.text("TRUNCATE staff_users, edit_links, trusted_structures CASCADE"))
        conn.execute(sa.text("DELETE FROM structures WHERE source = 'contribution'"))
        accounts.add_user(conn, "marie", PASSWORD, "moderator")
    with smtp_server() as (inbox, smtp_port):
        st = settings.model_copy(
            update={
                "secret_key": SECRET,
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp_port,
                "contrib_min_fill_s": 1.0,
                "moderator_emails": ["moderation@exemple.fr"],
            }
        )
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(st), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        b = Browser(base)
        try:
            yield {"base": base, "browser": b, "inbox": inbox, "engine": demo_data}
        finally:
            b.close()
            server.should_exit = True
            thread.join(timeout=10)


@pytest.fixture(autouse=True)
def clean_browser(stack: dict[str, Any]) -> Iterator[None]:
    """No console error and no request leaving loopback, in any test."""
    b: Browser = stack["browser"]
    b.errors.clear()
    b.blocked.clear()
    yield
    assert not b.errors, b.errors
    assert not b.blocked, b.blocked


def shot(page: Any, name: str) -> None:
    """A screenshot for the README."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def wait_mail(inbox: Inbox, to: str, n: int = 1, timeout: float = 20) -> list[Any]:
    """The mails sent to `to`, once there are `n` of them."""
    deadline = time.monotonic() + timeout
    while len(inbox.to(to)) < n:
        assert time.monotonic() < deadline, f"no mail to {to}: {inbox.messages}"
        time.sleep(0.1)
    return inbox.to(to)


def login(page: Any, base: str) -> None:
    """Log in as the moderator through the form, with the keyboard."""
    page.goto(base + "/moderation")
    page.fill("#identifiant", "marie")
    page.fill("#mot_de_passe", PASSWORD)
    page.press("#mot_de_passe", "Enter")
    page.wait_for_selector("text=Connecté·e")


def drag(page: Any, selector: str, dx: float, dy: float) -> None:
    """Drag a map marker by (dx, dy) pixels with the mouse."""
    box = page.locator(selector).bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + dx, cy + dy, steps=8)
    page.mouse.up()


def tile_ids(base: str, lon: float, lat: float, z: int = 14) -> set[int]:
    """The ids of the structures in the tile holding (lon, lat)."""
    import mapbox_vector_tile

    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    r = httpx.get(f"{base}/collections/structures/tiles/WebMercatorQuad/{z}/{y}/{x}")
    assert r.status_code in (200, 204), r.text
    if r.status_code == 204 or not r.content:
        return set()
    decoded = mapbox_vector_tile.decode(r.content)
    feats = decoded.get("structures", {}).get("features", [])
    return {int(f["properties"]["id"]) for f in feats if "id" in f["properties"]}


def test_visitor_proposes_moderator_moves_and_approves(stack: dict[str, Any]) -> None:
    base, b, inbox, engine = stack["base"], stack["browser"], stack["inbox"], stack["engine"]
    page = b.page(width=1100, height=900)
    page.goto(base + "/embed?territoire=departement:93")
    wait_idle(page)
    page.click("#cc-ajouter")
    page.wait_for_selector("#cc-contrib:not([hidden])")
    assert page.locator("#cc-c-message").is_hidden()  # no message field for a new structure
    page.fill("#cc-c-name", "Ressourcerie des Poissonniers")
    page.select_option("#cc-c-ess_family", "association")
    page.locator('#cc-contrib input[name="sectors"]').first.check()
    page.fill("#cc-c-postcode", "93200")
    page.fill("#cc-c-commune_name", "Saint-Denis")
    # The test database holds no street addresses (/ban/search/ finds nothing): the visitor
    # places the point by dragging the red marker.
    drag(page, ".cc-marqueur-contrib", 25, -15)
    wait_attr(page, "data-contrib-point", lambda v: "," in v)
    assert "placée à la main" in page.inner_text("#cc-c-position")
    page.fill("#cc-c-address_line", "12 rue de la République")
    page.fill("#cc-c-phone", "01 49 00 00 00")
    page.fill("#cc-c-opening_hours", "Mo-Sa 10:00-19:00; PH off")
    page.fill("#cc-c-contributor_email", "visiteuse@exemple.fr")
    shot(page, "contribution-formulaire")
    page.wait_for_timeout(1200)  # a person takes longer than the minimum fill time
    page.click("#cc-contrib-envoyer")
    pid = int(wait_attr(page, "data-contrib-sent", lambda v: v.isdigit()))
    assert "Merci" in page.inner_text("#cc-contrib-etat")
    shot(page, "contribution-envoyee")
    ack = wait_mail(inbox, "visiteuse@exemple.fr")[0]
    assert f"n° {pid}" in ack["Subject"]

    mod = b.page(width=1200, height=1000)
    login(mod, base)
    shot(mod, "moderation-file")
    mod.click(f"text=n° {pid}")
    mod.wait_for_selector('body[data-map-ready="1"]', state="attached", timeout=60_000)
    before = mod.input_value("#md-lon")
    drag(mod, ".maplibregl-marker", 30, 20)
    wait_attr(mod, "data-moved", lambda v: v == "1")
    moved_lon = float(mod.input_value("#md-lon"))
    moved_lat = float(mod.input_value("#md-lat"))
    assert mod.input_value("#md-lon") != before
    shot(mod, "moderation-proposition")
    with mod.expect_navigation():
        mod.get_by_role("button", name="Enregistrer la position").click()
    assert "placée à la main" in mod.inner_text("#md-precision")
    assert abs(float(mod.input_value("#md-lon")) - moved_lon) < 1e-6
    with mod.expect_navigation():
        mod.get_by_role("button", name="Approuver et publier").click()
    with engine.connect() as conn:
        sid = conn.execute(
            sa.text("SELECT structure_id FROM proposals WHERE id = :i AND status = 'approved'"),
            {"i": pid},
        ).scalar_one()
        s = conn.execute(
            sa.text("SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat, location_precision "
                    "FROM structures WHERE id = :i"), {"i": sid},
        ).mappings().one()  # fmt: skip
    assert abs(s["lon"] - moved_lon) < 1e-5 and abs(s["lat"] - moved_lat) < 1e-5
    assert s["location_precision"] == "manual"
    decision = wait_mail(inbox, "visiteuse@exemple.fr", 2)[1]
    assert "acceptée" in decision["Subject"]
    # In the items, in the tiles, on the map.
    bbox = f"{s['lon'] - 0.001},{s['lat'] - 0.001},{s['lon'] + 0.001},{s['lat'] + 0.001}"
    items = httpx.get(f"{base}/collections/structures/items", params={"bbox": bbox}).json()
    assert sid in [int(f["id"]) for f in items["features"]]
    assert sid in tile_ids(base, s["lon"], s["lat"])
    page.goto(base + f"/embed?territoire=departement:93&fiche={sid}")
    wait_idle(page)
    wait_attr(page, "data-fiche", lambda v: v == str(sid))
    card = page.inner_text("#cc-fiche")
    assert "Ressourcerie des Poissonniers" in card and "01 49 00 00 00" in card
    assert "lundi – samedi : 10h – 19h" in card
    shot(page, "fiche-publiee")
    mod.goto(base + "/moderation/journal")
    assert "approve" in mod.inner_text("main") and "move" in mod.inner_text("main")
    shot(mod, "moderation-journal")


def test_rejected_change_leaves_registry_identical(stack: dict[str, Any]) -> None:
    base, b, engine = stack["base"], stack["browser"], stack["engine"]
    with engine.connect() as conn:
        sid = conn.execute(sa.text(
            "SELECT min(id) FROM structures WHERE status = 'active' AND geom IS NOT NULL "
            "AND departement_code = '93'")).scalar_one()  # fmt: skip
        before = conn.execute(sa.text(CHECKSUM)).scalar()
    page = b.page(width=1100, height=900)
    page.goto(base + f"/embed?territoire=departement:93&fiche={sid}")
    wait_idle(page)
    wait_attr(page, "data-fiche", lambda v: v == str(sid))
    page.get_by_role("button", name="Proposer une modification").click()
    page.wait_for_selector("#cc-contrib:not([hidden])")
    assert page.input_value("#cc-c-name")  # prefilled from the card
    assert page.locator("#cc-c-siret").is_hidden()  # identifiers only for a new structure
    page.fill("#cc-c-name", "Nom erroné proposé")
    page.fill("#cc-c-message", "Le nom a changé.")
    page.wait_for_timeout(1200)
    page.click("#cc-contrib-envoyer")
    pid = int(wait_attr(page, "data-contrib-sent", lambda v: v.isdigit()))
    mod = b.page()
    login(mod, base)
    mod.goto(base + f"/moderation/propositions/{pid}")
    assert "Nom erroné proposé" in mod.inner_text(".md-diff")
    mod.fill("#md-motif", "Le nom officiel n'a pas changé.")
    with mod.expect_navigation():
        mod.get_by_role("button", name="Refuser").click()
    with engine.connect() as conn:
        assert conn.execute(sa.text(CHECKSUM)).scalar() == before
        status = conn.execute(sa.text("SELECT status FROM proposals WHERE id = :i"), {"i": pid})
        assert status.scalar() == "rejected"


def test_self_update_link_and_refusals(stack: dict[str, Any]) -> None:
    base, b, engine = stack["base"], stack["browser"], stack["engine"]
    with engine.begin() as conn:
        sid = conn.execute(sa.text(
            "SELECT min(id) FROM structures WHERE status = 'active'")).scalar_one()  # fmt: skip
        token = editlinks.create_link(conn, SECRET, sid, 30, "test")
        expired = editlinks.create_link(conn, SECRET, sid, -1, "test")  # expired yesterday
    page = b.page(width=900, height=1000)
    page.goto(base + f"/contribuer/fiche?lien={token}")
    page.fill("#cf-phone", "01 40 00 00 07")
    page.fill("#cf-opening_hours", "Tu-Fr 14:00-18:00")
    shot(page, "mise-a-jour-fiche")
    page.get_by_role("button", name="Envoyer la mise à jour").click()
    page.wait_for_selector("text=sera examinée")
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT origin, status, changes FROM proposals ORDER BY id DESC LIMIT 1")
        ).mappings().one()  # fmt: skip
    assert row["origin"] == "self_update" and row["status"] == "pending"
    assert row["changes"] == {"phone": "01 40 00 00 07", "opening_hours": "Tu-Fr 14:00-18:00"}
    r = page.goto(base + f"/contribuer/fiche?lien={expired}")
    assert r is not None and r.status == 403 and "expiré" in page.inner_text("body")
    with engine.begin() as conn:
        editlinks.revoke_links(conn, sid)
    r = page.goto(base + f"/contribuer/fiche?lien={token}")
    assert r is not None and r.status == 403 and "révoqué" in page.inner_text("body")
    # The two refusals above are the expected 403s, logged by the browser's console.
    b.errors[:] = [e for e in b.errors if "403" not in e]


def test_phone_layout_form_is_usable(stack: dict[str, Any]) -> None:
    base, b = stack["base"], stack["browser"]
    page = b.page(width=390, height=844)
    page.goto(base + "/carte")
    wait_idle(page)
    page.click("#cc-ajouter")
    page.wait_for_selector("#cc-contrib:not([hidden])")
    box = page.locator("#cc-contrib").bounding_box()
    assert box is not None and box["width"] >= 380  # full screen on a phone
    assert page.evaluate("document.activeElement.id") == "cc-c-name"
    page.keyboard.press("Escape")
    assert page.locator("#cc-contrib").is_hidden()
    assert page.evaluate("document.activeElement.id") == "cc-ajouter"  # focus returns
