"""Contributions and moderation over HTTP: forms, cookies, CSRF, fixation, throttling, roles,
receipts, anti-abuse and untrusted text shown as text everywhere (real PostGIS, real SMTP)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.factory import create_app
from carteco import accounts, editlinks
from carteco.settings import Settings
from tests.conftest import assert_problem
from tests.contrib_support import creation, smtp_server

SECRET = "secret-http-0123456789abcdef"
PASSWORD = "mot de passe très long"
# 777*777 = 603729: a product no date, time or id on the pages can spell by chance.
HOSTILE = "<script>alert(1)</script>{{ 777*777 }}{% if 1 %}X{% endif %}"


@pytest.fixture
def app_settings(settings: Settings) -> Settings:
    """Settings with a secret, a login throttle of 3 and 50 submissions an hour."""
    return settings.model_copy(
        update={"secret_key": SECRET, "login_failures_max": 3, "contrib_per_hour": 50}
    )


@pytest.fixture
def http(demo_data: sa.Engine, app_settings: Settings) -> Iterator[TestClient]:
    """A client on a fresh app, with a moderator and an admin."""
    with demo_data.begin() as conn:
        conn.execute(sa.text("TRUNCATE proposals, mail_outbox, login_failures CASCADE"))
        conn.execute(sa.text("TRUNCATE staff_users, edit_links, trusted_structures CASCADE"))
        conn.execute(sa.text("DELETE FROM structures WHERE source = 'contribution'"))
        accounts.add_user(conn, "modo", PASSWORD, "moderator")
        accounts.add_user(conn, "admin", PASSWORD, "admin")
    with TestClient(create_app(app_settings)) as c:
        yield c


def _login(c: TestClient, who: str = "modo", password: str = PASSWORD) -> Any:
    return c.post(
        "/moderation/connexion",
        data={"identifiant": who, "mot_de_passe": password},
        follow_redirects=False,
    )


def _csrf(c: TestClient, path: str = "/moderation") -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', c.get(path).text)
    assert m, "no CSRF token on the page"
    return m.group(1)


def _submit(c: TestClient, payload: dict[str, Any], ip: str = "") -> Any:
    return c.post("/contributions", json=payload)


def test_submit_and_receipt_only_for_its_owner(http: TestClient) -> None:
    r = _submit(http, creation(SECRET))
    assert r.status_code == 202, r.text
    a = r.json()
    b = _submit(http, creation(SECRET)).json()
    own = http.get(f"/contributions/{a['id']}", params={"recu": a["receipt"]})
    assert own.status_code == 200 and own.json()["status"] == "pending"
    assert "contributor_email" not in own.text and "raw" not in own.json()
    other = http.get(f"/contributions/{b['id']}", params={"recu": a["receipt"]})
    assert_problem(other, 404)
    # The moderation queue is not public, and its pages are never framed.
    login_page = http.get("/moderation")
    assert "Connexion à la modération" in login_page.text
    assert login_page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in login_page.headers.get_list("content-security-policy")
    assert_problem(http.get(f"/moderation/propositions/{a['id']}",
                            headers={"Accept": "application/json"}), 401)  # fmt: skip


def test_antiabuse_over_http(http: TestClient, app_settings: Settings, engine: sa.Engine) -> None:
    trap = creation(SECRET)
    trap["site_web_2"] = "http://x"
    assert _submit(http, trap).status_code == 202  # the robot is not told
    fast = creation(SECRET)
    fast["form_token"] = http.get("/contributions/jeton").json()["form_token"]
    assert_problem(_submit(http, fast), 400)
    big = creation(SECRET, description="x" * (app_settings.contrib_max_bytes + 10))
    assert_problem(_submit(http, big), 413)
    bad = creation(SECRET, siret="12345678901234")
    p = assert_problem(_submit(http, bad), 400)
    assert any(e["field"] == "siret" for e in p["errors"])  # type: ignore[union-attr]
    with engine.connect() as conn:
        statuses = [r[0] for r in conn.execute(sa.text("SELECT status FROM proposals ORDER BY id"))]
    assert statuses == ["spam", "spam", "rejected"]  # the 413 never reached the route


def test_rate_limit_per_client(demo_data: sa.Engine, app_settings: Settings) -> None:
    st = app_settings.model_copy(update={"contrib_per_hour": 2})
    with demo_data.begin() as conn:
        conn.execute(sa.text("TRUNCATE proposals CASCADE"))
    with TestClient(create_app(st)) as c:
        assert _submit(c, creation(SECRET)).status_code == 202
        assert _submit(c, creation(SECRET)).status_code == 202
        r = _submit(c, creation(SECRET))
        assert_problem(r, 429)
        assert r.headers.get("retry-after")


def test_login_cookie_fixation_and_throttle(http: TestClient) -> None:
    # A session token planted by an attacker is never adopted: login issues a new one.
    r = http.post(
        "/moderation/connexion",
        data={"identifiant": "modo", "mot_de_passe": PASSWORD},
        headers={"Cookie": "carteco_session=jeton-impose-par-un-attaquant"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    token = http.cookies.get("carteco_session")
    assert token and token != "jeton-impose-par-un-attaquant"
    planted = TestClient(http.app, cookies={"carteco_session": "jeton-impose-par-un-attaquant"})
    assert "Connexion à la modération" in planted.get("/moderation").text
    assert "Connecté·e" in http.get("/moderation").text
    # A second login gets a new token and ends the first session.
    r2 = http.post(
        "/moderation/connexion",
        data={"identifiant": "modo", "mot_de_passe": PASSWORD},
        follow_redirects=False,
    )
    m = re.search(r"carteco_session=([^;]+)", r2.headers["set-cookie"])
    assert m and m.group(1) != token
    stale = TestClient(http.app, cookies={"carteco_session": token})
    assert "Connexion à la modération" in stale.get("/moderation").text
    # Throttling: 3 failures, then even the right password is refused.
    for _ in range(3):
        assert _login(http, password="faux").status_code == 401
    r = _login(http)
    assert r.status_code == 429 and "échecs de connexion" in r.text


def test_secure_cookie_with_https_public_url(demo_data: sa.Engine, app_settings: Settings) -> None:
    st = app_settings.model_copy(update={"public_url": "https://carte.example.org"})
    with demo_data.begin() as conn:
        conn.execute(sa.text("TRUNCATE login_failures, staff_users CASCADE"))
        accounts.add_user(conn, "modo", PASSWORD, "moderator")
    with TestClient(create_app(st), base_url="https://carte.example.org") as c:
        r = _login(c)
        assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


def test_csrf_and_roles(http: TestClient, engine: sa.Engine) -> None:
    pid = _submit(http, creation(SECRET)).json()["id"]
    _login(http)
    csrf = _csrf(http)
    # No token, a wrong token, another site's Origin: refused, nothing decided.
    assert http.post(f"/moderation/propositions/{pid}/approuver", data={}).status_code == 403
    assert (
        http.post(f"/moderation/propositions/{pid}/approuver", data={"csrf": "x"}).status_code
        == 403
    )
    r = http.post(f"/moderation/propositions/{pid}/approuver", data={"csrf": csrf},
                  headers={"Origin": "https://evil.example"})  # fmt: skip
    assert r.status_code == 403
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT status FROM proposals WHERE id = :i"), {"i": pid}).scalar()
            == "pending"
        )
    # A moderator cannot do admin actions.
    sid = _any_structure(engine)
    r = http.post(f"/moderation/structures/{sid}/lien", data={"csrf": csrf})
    assert r.status_code == 403
    r = http.post(f"/moderation/structures/{sid}/confiance", data={"csrf": csrf})
    assert r.status_code == 403
    with engine.connect() as conn:
        assert not editlinks.is_trusted(conn, sid)
    # The moderator approves with the token.
    r = http.post(
        f"/moderation/propositions/{pid}/approuver", data={"csrf": csrf}, follow_redirects=False
    )
    assert r.status_code == 303
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT status FROM proposals WHERE id = :i"), {"i": pid}).scalar()
            == "approved"
        )
    # An admin can make an edit link.
    admin = TestClient(http.app)
    _login(admin, "admin")
    r = admin.post(f"/moderation/structures/{sid}/lien", data={"csrf": _csrf(admin)})
    assert r.status_code == 200 and "/contribuer/fiche?lien=" in r.text
    admin.post(f"/moderation/structures/{sid}/revoquer", data={"csrf": _csrf(admin)})


def _any_structure(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT min(id) FROM structures "
                    "WHERE status = 'active' AND source <> 'contribution'"
                )
            ).scalar_one()
        )


def test_hostile_text_shown_as_text_everywhere(http: TestClient, engine: sa.Engine) -> None:
    fields = {"name": HOSTILE, "description": HOSTILE, "address_line": HOSTILE,
              "commune_name": HOSTILE, "legal_form": HOSTILE}  # fmt: skip
    payload = creation(SECRET, **fields)
    payload["message"] = HOSTILE
    with smtp_server() as (inbox, port):
        r = _submit(http, payload)
        assert r.status_code == 202, r.text
    pid = r.json()["id"]
    _login(http)
    for path in ("/moderation", f"/moderation/propositions/{pid}", "/moderation/journal"):
        page = http.get(path).text
        assert "<script>alert(1)</script>" not in page
        assert "603729" not in page
    page = http.get(f"/moderation/propositions/{pid}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;{{ 777*777 }}{% if 1 %}X{% endif %}" in page
    csrf = _csrf(http)
    http.post(f"/moderation/propositions/{pid}/approuver", data={"csrf": csrf})
    with engine.connect() as conn:
        sid = conn.execute(
            sa.text("SELECT structure_id FROM proposals WHERE id = :i"), {"i": pid}
        ).scalar()
    card = http.get(f"/carte/structures/{sid}.json").json()
    assert card["name"] == HOSTILE  # JSON data; the map writes it with textContent
    items = http.get("/collections/structures/items", params={"limit": 10000}).text
    assert (
        "\\u003cscript" in items or "<script>" not in items or HOSTILE.replace('"', '\\"') in items
    )
    journal = http.get("/moderation/journal").text
    assert "<script>alert(1)</script>" not in journal


def test_self_update_link_flow(http: TestClient, engine: sa.Engine, app_settings: Settings) -> None:
    sid = _any_structure(engine)
    with engine.begin() as conn:
        token = editlinks.create_link(conn, SECRET, sid, 30, "test")
        expired = editlinks.create_link(conn, SECRET, sid, 30, "test")
        conn.execute(
            sa.text("UPDATE edit_links SET expires_at = now() - interval '1 day' WHERE id = :i"),
            {"i": int(expired.split(".")[0])},
        )
    page = http.get("/contribuer/fiche", params={"lien": token})
    assert page.status_code == 200 and "Mettre à jour la fiche" in page.text
    form = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page.text))
    # Sent back unchanged: refused on the same page, with its reason.
    same = http.post("/contribuer/fiche", data=form)
    assert same.status_code == 400 and "Mettre à jour la fiche" in same.text
    assert "fields : aucune modification proposée" in same.text
    form["phone"] = "01 48 00 00 00"
    r = http.post("/contribuer/fiche", data=form)
    assert r.status_code == 200 and "sera examinée" in r.text
    bad = http.get("/contribuer/fiche", params={"lien": token[:-3] + "xyz"})
    assert bad.status_code == 403 and "invalide" in bad.text
    old = http.get("/contribuer/fiche", params={"lien": expired})
    assert old.status_code == 403
    with engine.begin() as conn:
        editlinks.revoke_links(conn, sid)
    gone = http.post("/contribuer/fiche", data=form)
    assert gone.status_code == 403 and "révoqué" in gone.text
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.text("SELECT origin, status, changes FROM proposals ORDER BY id DESC LIMIT 1")
            )
            .mappings()
            .one()
        )
    assert row["origin"] == "self_update" and row["changes"] == {"phone": "01 48 00 00 00"}


def test_card_shows_contacts_and_patch_validates_them(http: TestClient, engine: sa.Engine) -> None:
    from carteco.auth import create_token

    sid = _any_structure(engine)
    with engine.begin() as conn:
        _, tok = create_token(conn, "test-contacts", ["edit"])
        version = conn.execute(
            sa.text("SELECT version FROM structures WHERE id = :i"), {"i": sid}
        ).scalar()
    h = {"Authorization": f"Bearer {tok}", "If-Match": f'"{version}"'}
    bad = http.patch(f"/structures/{sid}", json={"phone": "abc", "email": "x@"}, headers=h)
    p = assert_problem(bad, 400)
    assert {e["field"] for e in p["errors"]} == {"phone", "email"}  # type: ignore[union-attr]
    ok = http.patch(f"/structures/{sid}", headers=h, json={
        "phone": "+33 1 48 00 00 01", "email": "contact@exemple.fr",
        "opening_hours": "Mo-Fr 09:00-12:00,14:00-18:00; PH off"})  # fmt: skip
    assert ok.status_code == 200, ok.text
    card = http.get(f"/carte/structures/{sid}.json").json()
    assert card["phone"] == "01 48 00 00 01" and card["email"] == "contact@exemple.fr"
    assert card["opening_hours"]["lines"][0] == "lundi – vendredi : 9h – 12h, 14h – 18h"
    assert card["opening_hours"]["open_now"] in (True, False)
    assert card["sources"] and card["updated_at"]
