"""Needs survey end to end over HTTP with the real app: a structure declares a land need on the
public form, a moderator approves it in the one moderation queue, and it appears among the
needs of the 93 land diagnostic, matched to sites with each score explained (real PostGIS)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.factory import create_app
from carteco import accounts
from carteco.land import run_land_import
from carteco.settings import Settings
from tests.conftest import LAND, Browser, load_demo, reset_land
from tests.contrib_support import aged_token

SECRET = "secret-besoins-0123456789abcdef"
PASSWORD = "mot de passe très long"
CONTACT = "contact-besoin@exemple.fr"


@pytest.fixture(scope="module")
def land93(engine: sa.Engine) -> Iterator[sa.Engine]:
    """IDF demo registry, the 93 example sites and needs; no proposal, one moderator."""
    reset_land(engine)
    load_demo(engine)
    for kind, name in (("sites", "sites_93_exemple.csv"), ("besoins", "besoins_93_exemple.csv")):
        rep = run_land_import(engine, kind, LAND / name)
        assert rep.status == "succeeded", rep.as_dict()
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE proposals, mail_outbox, login_failures CASCADE"))
        conn.execute(sa.text("TRUNCATE staff_users CASCADE"))
        accounts.add_user(conn, "modo", PASSWORD, "moderator")
    yield engine
    reset_land(engine)


@pytest.fixture
def http(land93: sa.Engine, settings: Settings) -> Iterator[TestClient]:
    """A client on the real app (a secret, 50 submissions an hour per client)."""
    st = settings.model_copy(update={"secret_key": SECRET, "contrib_per_hour": 50})
    with TestClient(create_app(st)) as c:
        yield c


def _need(**over: str) -> dict[str, str]:
    deadline = (date.today() + timedelta(days=120)).isoformat()
    form = {
        "name": "Atelier numérique solidaire de Montreuil",
        "siret": "",
        "kind": "bureau",
        "usage": "Formation au numérique pour les habitants du quartier",
        "surface_min_m2": "80",
        "surface_max_m2": "200",
        "budget_rent_eur_month": "2 000",
        "budget_purchase_eur": "",
        "territories": "Montreuil (93), Est Ensemble",
        "max_distance_km": "",
        "deadline": deadline,
        "contact_name": "Camille Martin",
        "contact_email": CONTACT,
        "contact_phone": "01 23 45 67 89",
        "form_token": aged_token(SECRET),
        "site_web_2": "",
    }
    form.update(over)
    return form


def _status(engine: sa.Engine, pid: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(sa.text("SELECT status FROM proposals WHERE id = :i"), {"i": pid}).scalar()
        )


def _last(engine: sa.Engine) -> tuple[int, str, str]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT id, kind, status FROM proposals ORDER BY id DESC LIMIT 1")
        ).one()
    return int(row[0]), str(row[1]), str(row[2])


def test_need_survey_submit_moderate_and_appear_in_93_report(
    http: TestClient, land93: sa.Engine
) -> None:
    # The public form: French labels, a signed form token and a honeypot field.
    page = http.get("/besoins-fonciers")
    assert page.status_code == 200
    for label in ("Type de local", "Surface minimale (m²)", "Loyer maximal (€ par mois)",
                  "Communes ou territoires souhaités", "Échéance", "Courriel"):  # fmt: skip
        assert label in page.text
    assert re.search(r'name="form_token" value="\d+\.[0-9a-f]{32}"', page.text)
    assert 'name="site_web_2"' in page.text

    # A robot: sent at once with the page's fresh token → spam, with a message.
    fresh = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert fresh
    r = http.post("/besoins-fonciers", data=_need(form_token=fresh.group(1)))
    assert r.status_code == 400 and "trop vite" in r.text
    # The page sent back keeps the form's own token (its age), not a new one.
    assert f'name="form_token" value="{fresh.group(1)}"' in r.text
    assert _last(land93)[1:] == ("land_need", "spam")
    # From another site: refused before anything is stored.
    before = _last(land93)[0]
    r = http.post("/besoins-fonciers", data=_need(), headers={"Origin": "https://autre.example"})
    assert r.status_code == 403 and _last(land93)[0] == before

    # Invalid fields: each named in French, the typed values kept, stored as rejected.
    r = http.post(
        "/besoins-fonciers",
        data=_need(territories="Montreuil, Atlantide", surface_max_m2="50", kind="chateau"),
    )
    assert r.status_code == 400
    assert "Territoires souhaités : commune ou territoire inconnu" in r.text
    # Three communes are called Montreuil: the form asks which one, never guesses.
    assert "nom ambigu" in r.text and "Montreuil (93048)" in r.text
    assert "Surface maximale (m²) : inférieure à la surface minimale" in r.text
    assert "Type de local : type de local à choisir dans la liste" in r.text
    assert 'value="Montreuil, Atlantide"' in r.text
    assert _last(land93)[1:] == ("land_need", "rejected")

    # A valid declaration: pending in the moderation queue, with a receipt.
    r = http.post("/besoins-fonciers", data=_need())
    assert r.status_code == 200, r.text
    assert "sera examiné par l'équipe de modération" in r.text
    pid, kind, status = _last(land93)
    assert (kind, status) == ("land_need", "pending")
    receipt = re.search(r'<code id="bf-recu">([^<]+)</code>', r.text)
    assert receipt
    mine = http.get(f"/contributions/{pid}", params={"recu": receipt.group(1)})
    assert mine.status_code == 200 and mine.json()["status"] == "pending"

    # Not in the diagnostic before moderation.
    before_doc = http.get("/diagnostics/foncier/93.json").json()
    assert all(n["source_id"] != f"enquete-{pid}" for n in before_doc["needs"]["results"]["needs"])

    # The moderator sees it in the one queue, with the contact, and approves it (CSRF form).
    r = http.post(
        "/moderation/connexion",
        data={"identifiant": "modo", "mot_de_passe": PASSWORD},
        follow_redirects=False,
    )
    assert r.status_code == 303
    queue = http.get("/moderation", params={"type": "land_need"})
    assert f"/moderation/propositions/{pid}" in queue.text and "besoin foncier" in queue.text
    detail = http.get(f"/moderation/propositions/{pid}")
    assert "Atelier numérique solidaire de Montreuil" in detail.text and CONTACT in detail.text
    assert "Territoires souhaités" in detail.text and "fusionner" not in detail.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', detail.text)
    assert csrf
    r = http.post(f"/moderation/propositions/{pid}/approuver", data={"csrf": "faux"})
    assert r.status_code == 403 and _status(land93, pid) == "pending"
    r = http.post(
        f"/moderation/propositions/{pid}/approuver",
        data={"csrf": csrf.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303 and _status(land93, pid) == "approved"

    # It is now one of the 93 needs, matched, each score explained criterion by criterion.
    doc = http.get("/diagnostics/foncier/93.json").json()
    needs = {n["source_id"]: n for n in doc["needs"]["results"]["needs"]}
    need = needs[f"enquete-{pid}"]
    assert need["kind"] == "bureau" and need["territories"] == ["93048", "200057875"]
    assert (need["surface_min_m2"], need["surface_max_m2"]) == (80, 200)
    assert need["budget_rent_eur_month"] == 2000
    assert need["usage"] == "Formation au numérique pour les habitants du quartier"
    assert need["deadline"] == (date.today() + timedelta(days=120)).isoformat()
    assert need["met"] and need["matches"][0]["site_source_id"] == "S93-02"
    for m in need["matches"]:
        parts = m["score_detail"]
        assert [p["critere"] for p in parts][:5] == [
            "type", "surface", "budget", "localisation", "statut"
        ]  # fmt: skip
        assert sum(p["points"] for p in parts) == pytest.approx(m["score"], abs=0.2)
        assert all(p["motif"] for p in parts)
    top = need["matches"][0]["score_detail"]
    assert {p["critere"]: p["points"] for p in top}["localisation"] == 20  # commune souhaitée
    assert "enquete-besoins" in doc["layers"]["needs"]["source"]
    html = http.get("/diagnostics/foncier/93").text
    assert "Atelier numérique solidaire de Montreuil" in html and "Score : type 20/20" in html
    assert f"Échéance : {need['deadline']}" in html
    # The contact is for moderators only: never in the public report nor its data.
    for text in (html, http.get("/diagnostics/foncier/93.json").text):
        assert CONTACT not in text and "Camille Martin" not in text
    # Decided once: a second approval is a conflict.
    r = http.post(f"/moderation/propositions/{pid}/approuver", data={"csrf": csrf.group(1)})
    assert r.status_code == 409


def test_need_survey_rate_limit_and_honeypot(land93: sa.Engine, settings: Settings) -> None:
    """Over the per-client rate: 429; honeypot filled: a quiet answer, stored as spam."""
    st = settings.model_copy(update={"secret_key": SECRET, "contrib_per_hour": 1})
    with TestClient(create_app(st)) as c:
        with land93.begin() as conn:
            conn.execute(sa.text("TRUNCATE proposals CASCADE"))
        r = c.post("/besoins-fonciers", data=_need(site_web_2="http://spam.example"))
        assert r.status_code == 200 and _last(land93)[1:] == ("land_need", "spam")
        r = c.post("/besoins-fonciers", data=_need())
        assert r.status_code == 429 and "trop de propositions" in r.text
        assert _last(land93)[1:] == ("land_need", "spam")


@pytest.mark.browser
def test_need_form_filled_in_chromium(land93: sa.Engine, live_server: str) -> None:
    """A person fills the French form in a real browser: labelled fields, no request to other
    hosts, a receipt; the need waits for moderation."""
    browser = Browser(live_server)
    try:
        page = browser.page()
        page.goto(live_server + "/besoins-fonciers", timeout=90_000)
        page.get_by_label("Nom de la structure *").fill("Recyclerie du Landy")
        page.get_by_label("Type de local *").select_option("atelier")
        page.get_by_label("Surface minimale (m²)").fill("200")
        page.get_by_label("Surface maximale (m²)").fill("350")
        page.get_by_label("Communes ou territoires souhaités *").fill("Saint-Denis (93)")
        page.get_by_label("Courriel *").fill("recyclerie@exemple.fr")
        # A person takes a few seconds: the form's signed token measures it (minimum 3 s).
        page.wait_for_timeout(3500)
        page.get_by_role("button", name="Envoyer le besoin").click()
        page.locator("#bf-recu").wait_for(timeout=60_000)
        assert "sera examiné par l'équipe de modération" in page.locator("#bf-etat").inner_text()
        assert browser.errors == [] and browser.blocked == []
    finally:
        browser.close()
    pid, kind, status = _last(land93)
    assert (kind, status) == ("land_need", "pending")
    with land93.connect() as conn:
        changes = conn.execute(
            sa.text("SELECT changes FROM proposals WHERE id = :i"), {"i": pid}
        ).scalar_one()
    assert changes["territories"] == ["93066"] and changes["departement_code"] == "93"
