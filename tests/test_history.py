"""History: as_of on items, territory figures and tiles; datetime on the structures' life;
created/closed per year; the GoGoCarto export and its round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mapbox_vector_tile
import pytest
import sqlalchemy as sa

from carteco.auth import create_token
from carteco.importer import run_import
from carteco.importer.mapping import Mapping
from tests.conftest import FIXTURES, assert_problem

# Montreuil (93048): five structures a few metres apart.
LON, LAT = 2.4410, 48.8620
BEFORE = "2024-06-01"  # after the first import (backdated to 2024-01-01), before the second
HEADER = "nom,latitude,longitude,code_postal,commune,date_creation,date_fermeture,etat\n"
FIRST = [
    ("Atelier Un", "2015-03-01", "", ""),
    ("Atelier Deux", "2018-06-01", "", ""),
    ("Atelier Trois", "", "", ""),
]
SECOND = [
    ("Recyclerie Quatre", "2010-01-01", "2023-05-01", "fermé"),
    ("Recyclerie Cinq", "", "", ""),
]


def _csv(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    lines = [
        f"{name},{LAT + i * 0.0005:.6f},{LON + i * 0.0005:.6f},93100,Montreuil,{o},{c},{e}\n"
        for i, (name, o, c, e) in enumerate(rows)
    ]
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def registry(engine: sa.Engine, tmp_path_factory: pytest.TempPathFactory) -> sa.Engine:
    """First import (backdated to 2024-01-01 in the history), then a second one today."""
    tmp = tmp_path_factory.mktemp("history")
    with engine.begin() as conn:
        conn.execute(
            sa.text("TRUNCATE structures, structure_sources, import_runs RESTART IDENTITY CASCADE")
        )
    a = run_import(engine, _csv(tmp / "a.csv", FIRST), source="hist-a")
    assert (a.status, a.created) == ("succeeded", 3), a.as_dict()
    with engine.begin() as conn:
        # The current states began then (moving a start is not a change: no new version).
        conn.execute(sa.text("UPDATE structures SET valid_from = '2024-01-01T00:00:00Z'"))
    b = run_import(engine, _csv(tmp / "b.csv", SECOND), source="hist-b")
    assert (b.status, b.created) == ("succeeded", 2), b.as_dict()
    return engine


@pytest.fixture(scope="module")
def api(settings, registry):  # type: ignore[no-untyped-def]
    """A TestClient on the full app (no write rate limit)."""
    from fastapi.testclient import TestClient

    from api.factory import create_app

    unlimited = settings.model_copy(update={"rate_limit_writes_per_minute": 0})
    with TestClient(create_app(unlimited)) as c:
        yield c


def _names(api, **params: str) -> set[str]:  # type: ignore[no-untyped-def]
    r = api.get("/collections/structures/items", params={"limit": "100", **params})
    assert r.status_code == 200, r.text
    return {f["properties"]["name"] for f in r.json()["features"]}


def test_versions_recorded_with_author_and_run(registry: sa.Engine) -> None:
    with registry.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT v.changed_by, v.import_run_id, r.source FROM structure_versions v "
                "JOIN import_runs r ON r.id = v.import_run_id ORDER BY v.structure_id"
            )
        ).all()
    assert [(r.changed_by, r.source) for r in rows] == [("import:hist-a", "hist-a")] * 3 + [
        ("import:hist-b", "hist-b")
    ] * 2


def test_items_as_of_before_an_import(api) -> None:  # type: ignore[no-untyped-def]
    first = {n for n, *_ in FIRST}
    assert _names(api, as_of=BEFORE) == first
    assert _names(api) == first | {n for n, *_ in SECOND}
    today = datetime.now(UTC).date().isoformat()
    assert _names(api, as_of=today) == _names(api)
    assert _names(api, as_of="2023-12-31") == set()
    # Filters and paging work on the past registry too.
    assert _names(api, as_of=BEFORE, q="Deux") == {"Atelier Deux"}
    r = api.get("/collections/structures/items", params={"as_of": BEFORE, "limit": "2"})
    nxt = [link["href"] for link in r.json()["links"] if link["rel"] == "next"]
    assert nxt and "as_of=2024-06-01" in nxt[0]


def test_as_of_refused(api) -> None:  # type: ignore[no-untyped-def]
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    for bad in (tomorrow, "2024-02-30", "２０２４-01-01", "2024-1-1", "hier", "2024-01-01T00:00"):
        body = assert_problem(api.get("/collections/structures/items", params={"as_of": bad}), 400)
        assert body["errors"][0]["parameter"] == "as_of", bad
        assert_problem(api.get("/territories/commune/93048/stats", params={"as_of": bad}), 400)
        tile = "/collections/structures/tiles/WebMercatorQuad/15/0/0"
        assert_problem(api.get(tile, params={"as_of": bad}), 400)
    # Only structures have a history.
    assert_problem(api.get("/collections/communes/items", params={"as_of": BEFORE}), 400)


def test_patch_then_as_of_shows_the_old_name(api, registry) -> None:  # type: ignore[no-untyped-def]
    with registry.begin() as conn:
        _, token = create_token(conn, "historien", ["edit"])
        sid = conn.execute(
            sa.text("SELECT id FROM structures WHERE name = 'Atelier Un'")
        ).scalar_one()
    etag = api.get(f"/collections/structures/items/{sid}").headers["etag"]
    r = api.patch(
        f"/structures/{sid}",
        json={"name": "Atelier Un renommé"},
        headers={"Authorization": f"Bearer {token}", "If-Match": etag},
    )
    assert r.status_code == 200, r.text
    assert "Atelier Un" in _names(api, as_of=BEFORE)
    assert "Atelier Un renommé" not in _names(api, as_of=BEFORE)
    assert "Atelier Un renommé" in _names(api)
    with registry.connect() as conn:
        who = conn.execute(
            sa.text(
                "SELECT changed_by FROM structure_versions WHERE structure_id = :id "
                "AND valid_to IS NULL"
            ),
            {"id": sid},
        ).scalar_one()
    assert who == "api:historien"


def test_territory_stats_as_of_and_per_year(api) -> None:  # type: ignore[no-untyped-def]
    now = api.get("/territories/commune/93048/stats").json()
    past = api.get("/territories/commune/93048/stats", params={"as_of": BEFORE}).json()
    assert now["figures"]["structures"] == 4  # the closed one is not counted
    assert past["figures"]["structures"] == 3 and past["as_of"] == BEFORE
    years = now["figures"]["per_year"]
    assert years["created"] == {"2010": 1, "2015": 1, "2018": 1}
    assert years["closed"] == {"2023": 1}
    assert years["opened_on_unknown"] == 2 and years["closed_on_unknown"] == 0
    # Before the second import: no closure at all (an empty series, a fact), one fewer creation.
    assert past["figures"]["per_year"]["created"] == {"2015": 1, "2018": 1}
    assert past["figures"]["per_year"]["closed"] == {}


def test_per_year_null_with_reason_when_dates_unknown(registry: sa.Engine) -> None:
    from carteco.stats import per_year

    with registry.connect() as conn:
        # Paris 11e holds nothing: no known opening date → null with a reason, never zeros.
        out = per_year(conn, "commune", "75111")
    assert out["created"] is None and "opened_on" in out["unavailable"]["created"]


def _tile_count(api, **params: str) -> int:  # type: ignore[no-untyped-def]
    from tiles.mvt import tms

    t = tms().tile(LON, LAT, 15)
    r = api.get(f"/collections/structures/tiles/WebMercatorQuad/15/{t.y}/{t.x}", params=params)
    assert r.status_code in (200, 204), r.text
    if r.status_code == 204:
        return 0
    feats = mapbox_vector_tile.decode(r.content).get("structures", {}).get("features", [])
    return sum(int(f["properties"]["count"]) for f in feats)


def test_tiles_as_of(api) -> None:  # type: ignore[no-untyped-def]
    assert _tile_count(api) == 4
    assert _tile_count(api, as_of=BEFORE) == 3
    assert _tile_count(api, as_of="2023-01-01") == 0
    # Clusters (zoom ≤ 12) read the history too, not the precomputed grid.
    from tiles.mvt import tms

    t = tms().tile(LON, LAT, 10)
    url = f"/collections/structures/tiles/WebMercatorQuad/10/{t.y}/{t.x}"
    feats = mapbox_vector_tile.decode(api.get(url, params={"as_of": BEFORE}).content)
    assert sum(f["properties"]["count"] for f in feats["structures"]["features"]) == 3
    assert api.get("/carte", params={"as_of": BEFORE}).status_code == 200
    # The list beside the map reads the same past registry.
    bbox = f"{LON - 0.01},{LAT - 0.01},{LON + 0.01},{LAT + 0.01}"
    assert api.get("/carte/liste", params={"bbox": bbox}).json()["total"] == 4
    assert api.get("/carte/liste", params={"bbox": bbox, "as_of": BEFORE}).json()["total"] == 3
    assert api.get("/carte", params={"as_of": "2999-01-01"}).status_code == 400


def test_datetime_on_the_life(api) -> None:  # type: ignore[no-untyped-def]
    renamed = "Atelier Un renommé"
    both = _names(api, datetime="2016-01-01/2017-12-31")
    assert both - {renamed, "Atelier Un"} == {"Recyclerie Quatre"} and len(both) == 2
    alive = _names(api, datetime="2024-01-01T00:00:00Z/..")
    assert "Recyclerie Quatre" not in alive and "Recyclerie Cinq" in alive and len(alive) == 4
    assert _names(api, datetime="../2012-01-01") == {"Recyclerie Quatre"}
    at = _names(api, datetime="2023-05-01") - {"Atelier Un", renamed}
    assert at == {"Atelier Deux", "Recyclerie Quatre"}


def test_gogocarto_export_round_trip(api, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = FIXTURES / "gogocarto" / "transiscope_elements.json"
    mapping = Mapping.from_file(FIXTURES / "gogocarto" / "transiscope.mapping.toml")
    first = run_import(engine, src, source="transiscope", mapping=mapping)
    assert (first.status, first.created) == ("succeeded", 100), first.as_dict()
    r = api.get("/collections/structures/items", params={"f": "gogocarto", "source": "transiscope"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["ontology"] == "gogofull" and len(doc["data"]) == 100
    tree = doc["taxonomy"][0]["options"]
    assert any(o.get("subcategories") for o in tree)  # filières → activités
    el = next(e for e in doc["data"] if e["id"] == "3paH")
    assert el["name"] == "A l'essentiel" and el["geo"]["latitude"] == pytest.approx(46.13373)
    # No moderation status in the source: none invented (GoGoCarto's import sets its own).
    assert el["address"]["postalCode"] == "79190" and "status" not in el
    assert el["fiche_url"].startswith("https://presdecheznous.fr/")
    out = tmp_path / "elements.json"
    out.write_bytes(r.content)
    again = run_import(engine, out, source="transiscope")
    assert (again.status, again.created, again.updated) == ("succeeded", 0, 0), again.as_dict()
    assert again.unchanged == 100
    # A closed structure goes out as "closed" (GoGoCarto has no such status) and comes back.
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE structures SET status = 'closed', closed_on = '2024-03-01' "
                "WHERE source = 'transiscope' AND source_id = '3paH'"
            )
        )
    doc = api.get(
        "/collections/structures/items", params={"f": "gogocarto", "source": "transiscope"}
    ).json()
    el = next(e for e in doc["data"] if e["id"] == "3paH")
    assert el["status"] == "closed" and el["date_fermeture"] == "2024-03-01"
    out.write_text(json.dumps(doc), encoding="utf-8")
    third = run_import(engine, out, source="transiscope")
    assert (third.created, third.updated) == (0, 1), third.as_dict()


def test_cli_export_gogocarto_as_of(registry, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "CARTECO_DATABASE_URL": settings.database_url}
    out = tmp_path / "elements.json"

    def export(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "carteco.cli", "export", *args, str(out)]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)

    res = export("--format", "gogocarto", "--as-of", BEFORE, "--filter", "source = 'hist-a'")
    assert res.returncode == 0, res.stderr
    names = {e["name"] for e in json.loads(out.read_text(encoding="utf-8"))["data"]}
    assert names == {n for n, *_ in FIRST}  # the names as they were, before any edit
    bad = export("--format", "gogocarto", "--as-of", "2999-01-01")
    assert bad.returncode == 2 and "as_of" in bad.stdout + bad.stderr


def test_opening_and_closing_dates_from_sirene_and_rna_headers() -> None:
    from carteco.importer.mapping import Mapping

    rna = Mapping().resolve("rna.csv", ["id", "titre", "date_creat", "date_disso", "position"])
    assert (rna["opened_on"], rna["closed_on"]) == ("date_creat", "date_disso")
    sirene = Mapping().resolve(
        "StockEtablissement.csv", ["siret", "dateCreationEtablissement", "dateDebut"]
    )
    # dateDebut starts the establishment's current period (its closing date when closed).
    assert sirene["opened_on"] == "dateCreationEtablissement" and "closed_on" not in sirene


def test_territory_page_shows_creations_and_closures(api) -> None:  # type: ignore[no-untyped-def]
    page = api.get("/territoires/commune/93048")
    assert page.status_code == 200
    assert "Créations et fermetures par année" in page.text and "<td>2023</td>" in page.text


def test_history_keeps_ended_states_only(registry: sa.Engine) -> None:
    """SQL:2011-style: an insert writes no history; a change or a deletion moves the old state
    (its period, author and run) to structure_past_versions; the view lists every state."""
    from carteco.history import set_change_context, structures_source, versions

    def past(conn: sa.Connection, sid: int) -> list[tuple[object, ...]]:
        return conn.execute(
            sa.text(
                "SELECT data->>'name', changed_by, valid_to > valid_from "
                "FROM structure_past_versions WHERE structure_id = :id ORDER BY id"
            ),
            {"id": sid},
        ).all()

    with registry.begin() as conn:
        set_change_context(conn, "test:a")
        sid = conn.execute(
            sa.text(
                "INSERT INTO structures (name, source, source_id, content_hash) "
                "VALUES ('Versionnée', 'hist-z', 'z1', 'h') RETURNING id"
            )
        ).scalar_one()
        assert past(conn, sid) == []
    with registry.begin() as conn:
        set_change_context(conn, "test:b")
        conn.execute(
            sa.text("UPDATE structures SET valid_from = valid_from WHERE id = :id"), {"id": sid}
        )
        # Two changes in one transaction: one new state, the one before it kept once.
        for name in ("Versionnée 2", "Versionnée 3"):
            conn.execute(
                sa.text("UPDATE structures SET name = :n WHERE id = :id"), {"n": name, "id": sid}
            )
        row = conn.execute(
            sa.text(
                "SELECT version, changed_by, valid_from = now() FROM structures WHERE id = :id"
            ),
            {"id": sid},
        ).one()
        assert tuple(row) == (3, "test:b", True)
        assert past(conn, sid) == [("Versionnée", "test:a", True)]
        # The view: 0016's shape, every state; its current data is what a change records.
        states = versions(conn, sid)
        assert [(v["data"]["name"], v["changed_by"], v["valid_to"] is None) for v in states] == [
            ("Versionnée", "test:a", False),
            ("Versionnée 3", "test:b", True),
        ]
        recorded = conn.execute(
            sa.text(
                "SELECT data = to_jsonb(s) - 'search' - 'geom' - 'valid_from' - 'changed_by' "
                "- 'import_run_id' FROM structure_versions v JOIN structures s "
                "ON s.id = v.structure_id WHERE v.structure_id = :id AND v.valid_to IS NULL"
            ),
            {"id": sid},
        ).scalar_one()
        assert recorded is True
    # As of a past instant: the state then, with its author, from the ended states.
    with registry.connect() as conn:
        ended_at = conn.execute(
            sa.text("SELECT valid_to FROM structure_past_versions WHERE structure_id = :id"),
            {"id": sid},
        ).scalar_one()
        then = conn.execute(
            sa.text(
                f"SELECT name, changed_by, version FROM {structures_source('t')} x WHERE id = :id"
            ),
            {"t": ended_at, "id": sid},
        ).one()
        assert tuple(then) == ("Versionnée", "test:a", 1)
    with registry.begin() as conn:
        set_change_context(conn, "test:c")
        conn.execute(sa.text("DELETE FROM structures WHERE id = :id"), {"id": sid})
        assert [r[0] for r in past(conn, sid)] == ["Versionnée", "Versionnée 3"]
        assert (
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM structure_versions "
                    "WHERE structure_id = :id AND valid_to IS NULL"
                ),
                {"id": sid},
            ).scalar_one()
            == 0
        )
        conn.execute(
            sa.text("DELETE FROM structure_past_versions WHERE structure_id = :id"), {"id": sid}
        )
