"""France-wide territories (#15): commune polygons everywhere, tagging by point-in-polygon,
no invented zero when a layer is missing, French HTML errors on the browser routes."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from carteco.diagnostics.indicators import foncier_indicators
from carteco.importer import run_import
from carteco.importer.mapping import Mapping
from carteco.land import run_land_import
from geodata.loader import DATA_DIR, load_all
from tests.conftest import LAND, assert_html_error, assert_problem, load_demo, reset_land

COG = {
    r["code_insee"]: r for r in csv.DictReader((DATA_DIR / "communes_france_cog2026.csv").open())
}


def _import_31_08(engine: sa.Engine) -> None:
    """The real 31/08 fixtures: médiation numérique (located) and SIAE 2019 (no coordinates)."""
    for name, source, mapping, skip in (
        ("mediation_numerique_31_08_2022.csv", "mediation-31-08", "mediation_numerique", True),
        ("siae_31_08_2019-07.csv", "siae-31-08", "siae", False),
    ):
        rep = run_import(
            engine,
            LAND / name,
            source=source,
            mapping=Mapping.from_file(LAND / f"{mapping}.mapping.toml"),
            skip_invalid=skip,
        )
        assert rep.status == "succeeded", rep.as_dict()


@pytest.fixture(scope="module")
def france(engine: sa.Engine) -> Iterator[sa.Engine]:
    """IDF demo + the 31/08 structures, the 31 QPV and DVF, the 08 friches, the 93 sites."""
    reset_land(engine)
    load_demo(engine)
    _import_31_08(engine)
    for kind, name, kw in (
        ("dvf", "dvf_qpv_31_2016-2020.csv", {"description": "DVF dans les QPV seulement"}),
        ("qpv", "qpv_31_2015.geojson", {"vintage": "2015"}),
        ("friches", "friches_ardennes_cnig.csv", {}),
        ("besoins", "besoins_08_exemple.csv", {}),
        ("sites", "sites_93_exemple.csv", {}),
        ("besoins", "besoins_93_exemple.csv", {}),
    ):
        rep = run_land_import(engine, kind, LAND / name, **kw)
        assert rep.status == "succeeded", rep.as_dict()
    yield engine
    reset_land(engine)


def test_france_commune_layer_is_cog_2026(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        rows = {
            r.code: r
            for r in conn.execute(
                sa.text(
                    "SELECT code, name, epci_code, departement_code, region_code, population, "
                    "layer FROM territories WHERE level = 'commune'"
                )
            )
        }
        epci = set(
            conn.execute(sa.text("SELECT code FROM territories WHERE level = 'epci'")).scalars()
        )
    # Every current commune of metropolitan France and the DROM has its polygon, except the
    # few re-created since 2018 (their land is inside the 2018 commune they left).
    current = {c for c, r in COG.items() if r["zone"] != "com"}
    missing = current - set(rows)
    assert len(missing) <= 10, sorted(missing)
    assert not set(rows) - set(COG)  # only COG 2026 codes, no 2018 code left over
    # A merged commune: its old codes are one polygon under today's code.
    merged = next(c for c, r in COG.items() if r["anciens_codes"] and r["code_dep"] == "08")
    assert merged in rows
    for old in COG[merged]["anciens_codes"].split("|"):
        assert old not in rows or old == merged
    sg = rows["31483"]
    assert sg.name == "Saint-Gaudens" and sg.epci_code == COG["31483"]["code_epci"]
    assert (sg.departement_code, sg.region_code) == ("31", "76")
    assert sg.population == int(COG["31483"]["population"])
    assert rows["93048"].layer == "communes_idf"  # IDF keeps its own COG 2026 outlines
    # EPCI outlines for all France: every EPCI named in the COG table is a territory.
    assert {r["code_epci"] for r in COG.values() if r["code_epci"]} <= epci


def test_loader_is_idempotent(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        results = load_all(conn)
    assert {r.action for r in results} == {"unchanged"}


def test_structures_of_31_and_08_get_commune_and_epci(france: sa.Engine) -> None:
    with france.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT name, commune_name, commune_code, epci_code, departement_code "
                "FROM structures WHERE geom IS NOT NULL AND source = 'mediation-31-08'"
            )
        ).all()
    assert len(rows) > 50
    for r in rows:
        assert r.commune_code, r
        assert r.epci_code == (COG[r.commune_code]["code_epci"] or None), r
        assert r.departement_code == COG[r.commune_code]["code_dep"], r
    # Both départements, outside IDF: Toulouse and Charleville-Mézières (La Poste).
    assert {r.departement_code for r in rows} >= {"31", "08"}
    tlse = [r for r in rows if (r.commune_name or "").lower().startswith("toulouse")]
    assert tlse and {r.commune_code for r in tlse} == {"31555"}
    assert {r.epci_code for r in tlse} == {COG["31555"]["code_epci"]}
    cm = [r for r in rows if "charleville" in (r.commune_name or "").lower()]
    assert cm and {r.commune_code for r in cm} == {"08105"}
    assert {r.epci_code for r in cm} == {COG["08105"]["code_epci"]}


def test_diagnostic_resolves_postal_spellings(france: sa.Engine) -> None:
    """ "ST GAUDENS" and "CHARLEVILLE MEZIERES" (SIAE rows, no coordinates) find their commune."""
    with france.connect() as conn:
        d31 = foncier_indicators(conn, "31")
        d08 = foncier_indicators(conn, "08")
        siae = conn.execute(
            sa.text("SELECT commune_name FROM structures WHERE source = 'siae-31-08'")
        ).scalars()
        siae_by_name: dict[str, int] = {}
        for name in siae:
            siae_by_name[name] = siae_by_name.get(name, 0) + 1
    c31 = {c["code"]: c for c in d31["communes"]}
    c08 = {c["code"]: c for c in d08["communes"]}
    # Saint-Gaudens: the SIAE "ST GAUDENS" (the postal spelling) is there, not 0.
    assert c31["31483"]["structures"]["total"] == siae_by_name["ST GAUDENS"] == 1
    assert c08["08105"]["structures"]["total"] >= siae_by_name["CHARLEVILLE MEZIERES"] + 1
    for doc, communes in ((d31, c31), (d08, c08)):
        in_communes = sum(c["structures"]["total"] for c in communes.values())
        # Every structure of the département belongs to one of its communes.
        assert in_communes == doc["departement_figures"]["structures"]["total"]


# ------------------------------------------------------------ browser routes answer HTML


def test_browser_routes_answer_french_html_errors(client: Any, france: sa.Engine) -> None:
    assert_html_error(client.get("/embed?territoire=departement:99"), 404, "territoire inconnu")
    assert_html_error(client.get("/territoires/departement/99"), 404, "territoire inconnu")
    assert_html_error(client.get("/territoires/pays/FR"), 404)
    # Unknown filters: the same visible message on /carte and /embed, never an empty map.
    for q, status in (
        ("secteur=nope", 400),
        ("famille=nope", 400),
        ("territoire=departement:99", 404),
    ):
        carte = assert_html_error(client.get(f"/carte?{q}"), status)
        embed = assert_html_error(client.get(f"/embed?{q}"), status)
        detail = re.compile(r'<p id="erreur-detail">(.*?)</p>', re.S)
        assert detail.search(carte).group(1) == detail.search(embed).group(1)  # type: ignore[union-attr]
    # The detail is escaped data, not markup.
    page = client.get("/carte?secteur=%3Cscript%3Ealert(1)%3C/script%3E")
    assert "<script>alert(1)" not in page.text
    # API routes and clients asking JSON keep problem details.
    assert_problem(client.get("/territories/departement/99"), 404)
    assert_problem(client.get("/territories/departement/99/stats"), 404)
    assert_problem(client.get("/carte?secteur=nope", headers={"Accept": "application/json"}), 400)
    assert client.get("/carte?secteur=insertion").status_code == 200
    assert client.get("/carte?territoire=departement:31").status_code == 200


# ------------------------------------------------------------ never an invented zero

# Outputs checked in every scenario.
STATS = [
    ("departement", "93"),
    ("departement", "31"),
    ("departement", "08"),
    ("commune", "93048"),
    ("commune", "31483"),
    ("commune", "31555"),
    ("commune", "08105"),
    ("epci", COG["31483"]["code_epci"]),
    ("region", "11"),
    ("region", "76"),
]
DEPS = ("93", "31", "08")


def _is_zero(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and v == 0


def _zeros(
    doc: Any, bad: Callable[[tuple[str, ...]], bool], path: tuple[str, ...] = ()
) -> list[str]:
    """Paths of `doc` where `bad(path)` holds and the value is a number 0."""
    out: list[str] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _zeros(v, bad, (*path, str(k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _zeros(v, bad, (*path, str(i)))
    elif _is_zero(doc) and bad(path):
        out.append("/".join(path))
    return out


def _keys(*names: str) -> Callable[[tuple[str, ...]], bool]:
    return lambda path: bool(path) and path[-1] in names


def _under(*names: str) -> Callable[[tuple[str, ...]], bool]:
    return lambda path: any(p in names for p in path)


def _backup(conn: sa.Connection, table: str, where: str) -> str:
    bak = f"_bak_{table}"
    conn.execute(sa.text(f"CREATE TABLE {bak} AS SELECT * FROM {table} WHERE {where}"))  # noqa: S608
    conn.execute(sa.text(f"DELETE FROM {table} WHERE {where}"))  # noqa: S608
    return bak


def _restore(conn: sa.Connection, table: str) -> None:
    conn.execute(sa.text(f"INSERT INTO {table} SELECT * FROM _bak_{table}"))  # noqa: S608
    conn.execute(sa.text(f"DROP TABLE _bak_{table}"))


# Each optional layer: how to remove it, which figures depend on it, what a page must not say.
SCENARIOS: dict[str, dict[str, Any]] = {
    "qpv": {
        "tables": [("territories", "level = 'qpv'"), ("land_layers", "kind = 'qpv'")],
        "retag": True,
        "bad": _keys("in_qpv", "share_in_qpv", "near_qpv", "share_near_qpv"),
        "page": re.compile(r"<strong>0 %</strong>en quartier prioritaire"),
    },
    "population": {
        "population": True,
        "bad": _keys("population", "per_10000", "per_10k", "density"),
        "page": re.compile(r">0\.00<|>0\.0</strong>pour 10 000"),
    },
    "stations": {
        "tables": [("stations", "true")],
        "bad": lambda p: any("station" in x for x in p),
    },
    "dvf": {
        "tables": [("land_transactions", "true"), ("land_layers", "kind = 'dvf'")],
        "bad": _under("prices", "price_trend"),
    },
    "sites": {
        "tables": [("land_sites", "true"), ("land_layers", "kind IN ('friches', 'sites')")],
        "bad": _under("supply"),
    },
    "besoins": {
        "tables": [("land_needs", "true"), ("land_layers", "kind = 'besoins'")],
        "bad": _under("needs"),
    },
}


@pytest.mark.parametrize("missing", list(SCENARIOS))
def test_no_invented_zero_when_a_layer_is_missing(
    missing: str, france: sa.Engine, client: Any
) -> None:
    sc = SCENARIOS[missing]
    with france.begin() as conn:
        for table, where in sc.get("tables", []):
            _backup(conn, table, where)
        if sc.get("population"):
            conn.execute(sa.text("CREATE TABLE _pop_t AS SELECT id, population FROM territories"))
            conn.execute(
                sa.text("CREATE TABLE _pop_c AS SELECT code, type, population FROM communes_ref")
            )
            conn.execute(sa.text("UPDATE territories SET population = NULL"))
            conn.execute(sa.text("UPDATE communes_ref SET population = NULL"))
        if sc.get("retag"):
            conn.execute(sa.text("SELECT carteco_retag_structures()"))
    try:
        found: list[str] = []
        for level, code in STATS:
            stats = client.get(f"/territories/{level}/{code}/stats")
            assert stats.status_code == 200, (level, code, stats.text)
            found += [f"stats {level} {code}: {p}" for p in _zeros(stats.json(), sc["bad"])]
            terr = client.get(f"/territories/{level}/{code}?geometry=false").json()
            found += [f"territory {level} {code}: {p}" for p in _zeros(terr, sc["bad"])]
            page = client.get(f"/territoires/{level}/{code}")
            assert page.status_code == 200, (level, code)
            if sc.get("page") is not None and sc["page"].search(page.text):
                found.append(f"page /territoires/{level}/{code}: {sc['page'].pattern}")
            if missing in ("qpv", "population"):
                assert "non disponible" in page.text, (level, code)
        for dep in DEPS:
            diag = client.get(f"/diagnostics/foncier/{dep}.json")
            assert diag.status_code == 200, diag.text
            found += [f"diagnostic {dep}: {p}" for p in _zeros(diag.json(), sc["bad"])]
        for dep in DEPS:
            geo = client.get(
                f"/collections/structures/items?departement={dep}&limit=10000&f=geojson"
            )
            assert geo.status_code == 200
            for f in geo.json()["features"]:
                found += [f"export {dep}: {p}" for p in _zeros(f["properties"], sc["bad"])]
                if missing == "qpv":
                    assert f["properties"].get("qpv_code") is None, f["properties"]
        assert not found, "\n".join(found)
        if missing == "qpv":
            own = client.get("/territories/departement/31/stats").json()["figures"]
            assert own["in_qpv"] is None and "QPV" in own["unavailable"]["in_qpv"]
        if missing == "population":
            own = client.get("/territories/commune/31483/stats").json()["figures"]
            assert own["per_10000"] is None and own["unavailable"]["per_10000"]
    finally:
        with france.begin() as conn:
            for table, _ in reversed(sc.get("tables", [])):
                _restore(conn, table)
            if sc.get("population"):
                conn.execute(
                    sa.text(
                        "UPDATE territories t SET population = b.population FROM _pop_t b "
                        "WHERE b.id = t.id"
                    )
                )
                conn.execute(
                    sa.text(
                        "UPDATE communes_ref c SET population = b.population FROM _pop_c b "
                        "WHERE (b.code, b.type) = (c.code, c.type)"
                    )
                )
                conn.execute(sa.text("DROP TABLE _pop_t, _pop_c"))
            if sc.get("retag"):
                conn.execute(sa.text("SELECT carteco_retag_structures()"))


def test_with_every_layer_the_figures_are_there(france: sa.Engine, client: Any) -> None:
    """The control: with the layers loaded, the same outputs do carry the figures."""
    own = client.get("/territories/departement/31/stats").json()["figures"]
    assert own["in_qpv"] is not None and own["in_qpv"] > 0 and own["per_10000"] > 0
    # 93 has no QPV layer loaded in this database: not 0, no figure.
    own93 = client.get("/territories/departement/93/stats").json()["figures"]
    assert own93["in_qpv"] is None and own93["share_in_qpv"] is None
    page = client.get("/territoires/departement/93").text
    assert "0 %</strong>en quartier prioritaire" not in page and "non disponible" in page
    assert json.dumps(own93["unavailable"], ensure_ascii=False).count("QPV") == 2
