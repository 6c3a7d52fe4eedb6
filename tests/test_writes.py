"""The token-guarded write API: tokens from the CLI, imports, If-Match edits, closures, audit."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from carteco.auth import create_token, hash_secret, revoke_token
from tests.conftest import ROOT, assert_problem
from tests.features_support import load_demo


@pytest.fixture(scope="module")
def demo(engine: sa.Engine) -> int:
    """The demo registry, loaded once for the module."""
    return load_demo(engine)


@pytest.fixture(scope="module")
def api(settings, demo):  # type: ignore[no-untyped-def]
    """A TestClient on the full app."""
    from fastapi.testclient import TestClient

    from api.factory import create_app

    # Many writes in a row from one token: the write rate limit is tested in test_ratelimit.
    unlimited = settings.model_copy(update={"rate_limit_writes_per_minute": 0})
    with TestClient(create_app(unlimited)) as c:
        yield c


@pytest.fixture(scope="module")
def tokens(engine: sa.Engine) -> dict[str, str]:
    """An editor, an importer and a revoked token."""
    with engine.begin() as conn:
        conn.execute(
            sa.text("TRUNCATE api_tokens, audit_log, import_jobs RESTART IDENTITY CASCADE")
        )
        _, editor = create_token(conn, "éditeur", ["edit"])
        _, importer = create_token(conn, "importeur", ["import"])
        rid, revoked = create_token(conn, "ancien", ["edit", "import"])
        revoke_token(conn, rid)
    return {"edit": editor, "import": importer, "revoked": revoked}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _located_id(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT min(id) FROM structures WHERE geom IS NOT NULL AND status = 'active'"
                )
            ).scalar_one()
        )


def test_cli_token_is_stored_hashed(settings, engine) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "CARTECO_DATABASE_URL": settings.database_url}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "carteco.cli",
            "token",
            "create",
            "partenaire",
            "--scope",
            "import,edit",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    token = res.stdout.strip().splitlines()[-1]
    assert token.startswith("carteco_") and len(token) > 40
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT token_hash, scopes FROM api_tokens WHERE name = 'partenaire'")
        ).one()
        stored = " ".join(str(v) for v in conn.execute(sa.text("SELECT * FROM api_tokens")).all())
    assert row.token_hash == hash_secret(token) and sorted(row.scopes) == ["edit", "import"]
    assert token not in stored
    bad = subprocess.run(
        [sys.executable, "-m", "carteco.cli", "token", "create", "x", "--scope", "root"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert bad.returncode == 2


def test_writes_need_a_token_with_the_right_scope(api, engine, tokens) -> None:  # type: ignore[no-untyped-def]
    sid = _located_id(engine)
    url = f"/structures/{sid}"
    body = assert_problem(api.patch(url, json={"name": "x"}), 401)
    assert "jeton" in body["detail"]
    assert_problem(api.patch(url, json={"name": "x"}, headers=_auth("carteco_nope")), 401)
    assert_problem(api.patch(url, json={"name": "x"}, headers=_auth(tokens["revoked"])), 401)
    assert_problem(api.patch(url, json={"name": "x"}, headers=_auth(tokens["import"])), 403)
    assert_problem(api.delete(url, headers=_auth(tokens["import"])), 403)
    files = {"file": ("x.csv", b"nom\nA\n", "text/csv")}
    assert_problem(api.post("/imports", files=files), 401)
    assert_problem(api.post("/imports", files=files, headers=_auth(tokens["edit"])), 403)
    # Reads stay public.
    assert api.get(f"/collections/structures/items/{sid}").status_code == 200


def test_patch_with_if_match(api, engine, tokens) -> None:  # type: ignore[no-untyped-def]
    sid = _located_id(engine)
    url = f"/structures/{sid}"
    read = api.get(f"/collections/structures/items/{sid}")
    etag = read.headers["etag"]
    h = _auth(tokens["edit"])
    assert_problem(api.patch(url, json={"name": "Sans If-Match"}, headers=h), 428)
    r = api.patch(
        url,
        json={"name": "Nouvelle raison", "sectors": ["numerique.mediation"], "esus": True},
        headers={**h, "If-Match": etag},
    )
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["name"] == "Nouvelle raison"
    new_etag = r.headers["etag"]
    assert new_etag != etag
    # A second editor holding the old ETag loses nothing and is told so.
    stale = api.patch(url, json={"name": "Écrasement"}, headers={**h, "If-Match": etag})
    assert_problem(stale, 412)
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT name FROM structures WHERE id = :i"), {"i": sid}).scalar()
            == "Nouvelle raison"
        )
    for bad in (
        {"id": 3},
        {"ess_family": "banque"},
        {"sectors": ["nope"]},
        {"geometry": {"type": "Point"}},
        {},
    ):
        assert_problem(api.patch(url, json=bad, headers={**h, "If-Match": new_etag}), 400)
    moved = api.patch(
        url,
        json={"geometry": {"type": "Point", "coordinates": [2.4417, 48.8625]}},
        headers={**h, "If-Match": new_etag},
    )
    assert moved.status_code == 200
    assert moved.json()["properties"]["commune_code"] == "93048"  # re-tagged by the trigger
    assert moved.json()["properties"]["location_precision"] == "manual"
    with engine.connect() as conn:
        edits = conn.execute(
            sa.text("SELECT count(*) FROM audit_log WHERE action = 'edit' AND target = :t"),
            {"t": f"structures/{sid}"},
        ).scalar_one()
    assert edits == 2
    assert_problem(
        api.patch("/structures/999999999", json={"name": "x"}, headers={**h, "If-Match": '"1"'}),
        404,
    )


def test_delete_closes_and_never_removes(api, engine, tokens) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        sid = int(conn.execute(sa.text("SELECT max(id) FROM structures")).scalar_one())
    h = _auth(tokens["edit"])
    etag = api.get(f"/collections/structures/items/{sid}").headers["etag"]
    # Without If-Match a closure could undo an edit made since the client's read: refused.
    body = assert_problem(api.delete(f"/structures/{sid}", headers=h), 428)
    assert "If-Match" in body["detail"]
    assert_problem(api.delete(f"/structures/{sid}", headers={**h, "If-Match": "*"}), 428)
    stale = api.delete(f"/structures/{sid}", headers={**h, "If-Match": '"999"'})
    assert_problem(stale, 412)
    assert stale.headers["etag"] == etag  # the current version, to re-read and retry
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT status FROM structures WHERE id = :i"), {"i": sid}
            ).scalar_one()
            == "active"
        )
    r = api.delete(f"/structures/{sid}", headers={**h, "If-Match": etag})
    assert r.status_code == 200 and r.json()["properties"]["status"] == "closed"
    assert r.headers["etag"] == api.get(f"/collections/structures/items/{sid}").headers["etag"]
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT status, closed_on FROM structures WHERE id = :i"), {"i": sid}
        ).one()
        audit = conn.execute(
            sa.text("SELECT token_name, action, target FROM audit_log ORDER BY id")
        ).all()
    assert row.status == "closed" and row.closed_on is not None
    assert ("éditeur", "close", f"structures/{sid}") in [tuple(a) for a in audit]


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"name": '=HYPERLINK("http://x")'}, "name", "formule"),
        ({"name": "@SUM(A1:A9)"}, "name", "formule"),
        ({"description": "+cmd('calc')"}, "description", "formule"),
        ({"commune_name": "Paris\x1b[31m"}, "commune_name", "contrôle"),
        ({"address_line": "1 rue\x07 X"}, "address_line", "contrôle"),
        ({"website": "javascript:alert(1)"}, "website", "javascript"),
        ({"website": " JaVa\tScRiPt:alert(1)"}, "website", "javascript"),
        ({"website": "data:text/html,<script>alert(1)</script>"}, "website", "data"),
        ({"website": "vbscript:msgbox(1)"}, "website", "vbscript"),
        ({"website": "ftp://exemple.org"}, "website", "http"),
        ({"description": "javascript:alert(1)"}, "description", "javascript"),
        ({"postcode": "\u0669\u0663\u0661\u0660\u0660"}, "postcode", "code postal"),
        ({"postcode": "\uff19\uff13\uff11\uff10\uff10"}, "postcode", "code postal"),
        ({"postcode": "7501"}, None, None),  # padded to 07501: a valid postcode
        ({"name": {"fr": "Nom"}}, "name", "texte attendu"),
        ({"name": ["Nom"]}, "name", "texte attendu"),
        ({"name": "   "}, "name", "nom de la structure manquant"),
        ({"name": "x" * 501}, "name", "trop long"),
        ({"sectors": "numerique.mediation"}, None, None),
        ({"sectors": [{"code": "x"}]}, "sectors", "texte attendu"),
        ({"opened_on": "\u0662\u0660\u0662\u0660"}, "opened_on", "date illisible"),
        ({"opened_on": "2020-02-31"}, "opened_on", "date illisible"),
        ({"esus": "souvent"}, "esus", "oui/non"),
        ({"status": "peut-être"}, "status", "statut"),
        ({"status": "hidden"}, "status", "statut modifiable"),  # not served: no hand edit
        ({"status": "en attente"}, "status", "statut modifiable"),
        ({"geometry": {"type": "Point", "coordinates": [48.85, 2.35]}}, "geometry", "inversées"),
        ({"geometry": {"type": "Point", "coordinates": [-74.0, 40.7]}}, "geometry", "France"),
        ({"geometry": {"type": "Point", "coordinates": ["2", "48"]}}, "geometry", "illisibles"),
        ({"siret": "35600000000048"}, "siret", "non modifiable"),
    ],
)
def test_patch_uses_the_import_rules(  # type: ignore[no-untyped-def]
    api, engine, tokens, changes, field, reason
) -> None:
    """PATCH refuses exactly what an import refuses, with field, value and reason."""
    sid = _located_id(engine)
    url = f"/structures/{sid}"
    h = _auth(tokens["edit"])
    read = api.get(f"/collections/structures/items/{sid}")
    before = read.json()["properties"]
    r = api.patch(url, json=changes, headers={**h, "If-Match": read.headers["etag"]})
    if field is None:
        assert r.status_code == 200, r.text
        return
    body = assert_problem(r, 400)
    assert body["errors"], body
    assert any(e["field"] == field and reason in e["reason"] for e in body["errors"]), body
    assert all(set(e) == {"field", "value", "reason"} for e in body["errors"])
    after = api.get(f"/collections/structures/items/{sid}")
    assert after.headers["etag"] == read.headers["etag"]
    assert after.json()["properties"] == before


def test_patch_reports_every_bad_field(api, engine, tokens) -> None:  # type: ignore[no-untyped-def]
    sid = _located_id(engine)
    read = api.get(f"/collections/structures/items/{sid}")
    r = api.patch(
        f"/structures/{sid}",
        json={"name": "=1+1", "website": "javascript:x", "postcode": "ABCDE", "nope": 1},
        headers={**_auth(tokens["edit"]), "If-Match": read.headers["etag"]},
    )
    body = assert_problem(r, 400)
    assert {e["field"] for e in body["errors"]} == {"name", "website", "postcode", "nope"}


def test_async_import_with_status_url(api, engine, tokens) -> None:  # type: ignore[no-untyped-def]
    from carteco.demo import DEMO_SOURCES

    d = DEMO_SOURCES[2]  # the co-operative supermarkets (GeoJSON)
    h = _auth(tokens["import"])
    with d.path.open("rb") as f, d.mapping_path.open("rb") as m:
        r = api.post(
            "/imports",
            files={"file": (d.path.name, f, "application/geo+json"), "mapping": ("m.toml", m)},
            data={"source": "api-supermarches"},
            headers=h,
        )
    assert r.status_code == 202, r.text
    status_url = r.headers["location"].replace("http://testserver", "")
    deadline = time.monotonic() + 60
    while True:
        job = api.get(status_url, headers=h).json()
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    assert job["report"]["created"] + job["report"]["updated"] + job["report"]["unchanged"] > 0
    assert job["run_id"]
    assert_problem(api.get(status_url), 401)
    assert_problem(api.get("/imports/999999", headers=h), 404)
    with engine.connect() as conn:
        n = conn.execute(
            sa.text("SELECT count(*) FROM structure_sources WHERE source = 'api-supermarches'")
        ).scalar_one()
    assert n > 0
    # A file the importer refuses ends as a rejected job with its message.
    bad = api.post("/imports", files={"file": ("vide.csv", b"", "text/csv")}, headers=h)
    assert bad.status_code == 202
    url = bad.headers["location"].replace("http://testserver", "")
    for _ in range(100):
        job = api.get(url, headers=h).json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    assert job["status"] in ("rejected", "failed") and job["message"]


def test_cors_allows_writes_from_embeds(api) -> None:  # type: ignore[no-untyped-def]
    r = api.options(
        "/structures/1",
        headers={"Origin": "https://partenaire.example", "Access-Control-Request-Method": "PATCH"},
    )
    assert r.status_code == 200 and "PATCH" in r.headers["access-control-allow-methods"]


def _wait_job(api, url: str, h: dict[str, str]) -> dict[str, object]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while True:
        job = api.get(url, headers=h).json()
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return job  # type: ignore[no-any-return]
        time.sleep(0.1)


@pytest.fixture
def own_tmp(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """The app's temporary folders go under tmp_path, to see what is left behind."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("filename", [".", "..", "", "dossier/..", "a/", "/", "..\\\\"])
def test_import_file_names_are_safe(api, tokens, own_tmp, filename: str) -> None:  # type: ignore[no-untyped-def]
    h = _auth(tokens["import"])
    r = api.post("/imports", files={"file": (filename, b"nom\nA\n", "text/csv")}, headers=h)
    body = assert_problem(r, 400)
    assert "nom de fichier" in body["detail"] or "file" in body["detail"], body
    assert list(own_tmp.iterdir()) == []  # no temporary folder left behind


def test_import_folder_is_removed_after_the_job(api, tokens, own_tmp) -> None:  # type: ignore[no-untyped-def]
    h = _auth(tokens["import"])
    deep = b'{"type": "FeatureCollection", "features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for name, content, status, reason in [
        ("../../x/deep.geojson", deep, "rejected", "trop imbriqué"),
        ("five.geojson", b'{"type": "FeatureCollection", "features": 5}', "rejected", "features"),
        ("mapping.toml", b"nom\nA\n", "dry_run", None),  # the data file's name is the mapping's
    ]:
        r = api.post(
            "/imports",
            files={"file": (name, content), "mapping": ("m.toml", b"[columns]\nname = 'nom'\n")},
            data={"dry_run": "true", "source": "noms"},
            headers=h,
        )
        assert r.status_code == 202, r.text
        job = _wait_job(api, r.headers["location"].replace("http://testserver", ""), h)
        assert job["status"] == status, job
        assert job["file_name"] == name.rsplit("/", 1)[-1]
        if reason:
            assert reason in str(job["message"]) and "Traceback" not in str(job["message"])
    deadline = time.monotonic() + 10
    while list(own_tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)  # the job's thread removes its folder right after writing its status
    assert list(own_tmp.iterdir()) == []
