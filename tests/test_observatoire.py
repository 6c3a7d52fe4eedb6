"""The Observatoire: coverage checked against an independent geopandas computation (93, one
sector, communes and a 200 m grid), panorama figures (employees as ranges, creations per year),
the API, the CLI and the PDF."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pytest
import sqlalchemy as sa
from pypdf import PdfReader
from pyproj import Transformer
from shapely.geometry import Point

from carteco.observatoire.coverage import coverage, white_zones_geojson
from carteco.observatoire.effectifs import employment
from carteco.observatoire.grid import GridError, load_grid
from carteco.observatoire.panorama import panorama
from carteco.sectors import load_taxonomy
from tests.conftest import ARTIFACTS, ROOT, assert_html_error, assert_problem, load_demo

SECTOR = "numerique"
RADII = (1.0, 2.0, 5.0)


@pytest.fixture(scope="module")
def demo(engine: sa.Engine) -> sa.Engine:
    """The IDF demo registry, with no population grid."""
    load_demo(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM population_grid"))
    return engine


def _structures(engine: sa.Engine) -> gpd.GeoDataFrame:
    codes = sorted(load_taxonomy().descendants(SECTOR))
    with engine.connect() as conn:
        df = gpd.read_postgis(
            sa.text(
                "SELECT id, geom FROM structures WHERE status = 'active' AND geom IS NOT NULL "
                "AND sectors && CAST(:codes AS text[])"
            ),
            conn,
            geom_col="geom",
            params={"codes": codes},
        )
    return df.to_crs(2154)


def test_coverage_of_93_matches_geopandas(demo: sa.Engine) -> None:
    """Distances from each commune centre to the nearest open structure, population in reach."""
    communes = gpd.read_file(ROOT / "geodata" / "data" / "communes_idf_cog2026.geojson")
    code_col = next(c for c in ("code", "insee", "code_insee") if c in communes.columns)
    communes = communes[communes[code_col].str[:2] == "93"].to_crs(2154)
    with demo.connect() as conn:
        pops = dict(
            conn.execute(
                sa.text(
                    "SELECT code, population FROM territories WHERE level = 'commune' "
                    "AND departement_code = '93'"
                )
            ).all()
        )
        result = coverage(conn, "departement", "93", [SECTOR], RADII)
    assert result is not None and result["unit"] == "commune"
    structures = _structures(demo)
    assert len(structures) > 10
    expected: dict[str, float] = {}
    for code, geom in zip(communes[code_col], communes.geometry, strict=True):
        centre = geom.centroid
        expected[code] = float(structures.distance(centre).min())
    got = {c["code"]: c for c in result["communes"]}
    assert set(got) == set(expected)
    for code, dist in expected.items():
        assert got[code]["distance_m"] == pytest.approx(dist, abs=0.5), code
        assert got[code]["population"] == pops[code]
    total = sum(pops.values())
    assert result["population"] == total
    for w in result["within"]:
        reach = sum(pops[c] for c, d in expected.items() if d <= w["km"] * 1000)
        assert w["population"] == reach
        assert w["share"] == pytest.approx(reach / total, abs=1e-4)
    assert "centre de la commune" in result["unit_note"]


def _grid_file(path: Path) -> tuple[list[tuple[str, float]], list[Point]]:
    """A 12 × 12 grid of 200 m squares over Montreuil in the INSEE Filosofi format."""
    to3035 = Transformer.from_crs(4326, 3035, always_xy=True)
    x0, y0 = to3035.transform(2.44, 48.855)
    x0, y0 = int(x0 // 200 * 200), int(y0 // 200 * 200)
    rows, centres = [], []
    for i in range(12):
        for j in range(12):
            e, n = x0 + 200 * i, y0 + 200 * j
            idcar = f"CRS3035RES200mN{n}E{e}"
            pop = float((i * 7 + j * 3) % 40)
            rows.append((idcar, pop))
            centres.append(Point(e + 100, n + 100))
    with path.open("w", encoding="utf-8") as fh:
        fh.write("idcar_200m,idk,ind,men\n")
        for idcar, pop in rows:
            fh.write(f"{idcar},x,{pop},1\n")
    return rows, centres


def test_grid_coverage_matches_geopandas(demo: sa.Engine, tmp_path: Path) -> None:
    """With 200 m squares loaded, coverage of Montreuil is computed square by square."""
    path = tmp_path / "filosofi_200m.csv"
    rows, centres = _grid_file(path)
    assert load_grid(demo, path, "test-grid") == len(rows)
    try:
        squares = gpd.GeoDataFrame(
            {"idcar": [r[0] for r in rows], "ind": [r[1] for r in rows]},
            geometry=centres,
            crs=3035,
        )
        communes = gpd.read_file(ROOT / "geodata" / "data" / "communes_idf_cog2026.geojson")
        code_col = next(c for c in ("code", "insee", "code_insee") if c in communes.columns)
        montreuil = communes[communes[code_col] == "93048"].to_crs(3035).geometry.iloc[0]
        inside = squares[squares.within(montreuil)].to_crs(2154)
        assert 0 < len(inside) < len(rows)
        structures = _structures(demo)
        dists = [float(structures.distance(p).min()) for p in inside.geometry]
        with demo.connect() as conn:
            result = coverage(conn, "commune", "93048", [SECTOR], RADII, with_geometry=True)
        assert result is not None and result["unit"] == "carreau"
        assert result["units"] == len(inside)
        assert result["population"] == round(inside["ind"].sum())
        by_id = {u["code"]: u for u in result["_units"]}
        for idcar, d in zip(inside["idcar"], dists, strict=True):
            assert by_id[idcar]["distance_m"] == pytest.approx(d, abs=0.5)
        for w in result["within"]:
            reach = sum(p for p, d in zip(inside["ind"], dists, strict=True) if d <= w["km"] * 1000)
            assert w["population"] == round(reach)
        zones = white_zones_geojson(result)
        assert len(zones["features"]) == sum(1 for d in dists if d > RADII[-1] * 1000)
    finally:
        with demo.begin() as conn:
            conn.execute(sa.text("DELETE FROM population_grid"))


def test_grid_file_errors_name_row_and_column(demo: sa.Engine, tmp_path: Path) -> None:
    """A malformed square or population names its line and column; nothing is written."""
    path = tmp_path / "bad.csv"
    path.write_text(
        "idcar_200m,ind\nCRS3035RES200mN2890000E3760000,12\nnot-a-square,3\n"
        "CRS3035RES200mN2890200E3760000,-4\n",
        encoding="utf-8",
    )
    with pytest.raises(GridError) as exc:
        load_grid(demo, path)
    messages = [e.message("bad.csv") for e in exc.value.row_errors]
    assert messages[0].startswith("bad.csv, ligne 3, colonne « idcar_200m »")
    assert "ligne 4, colonne « ind »" in messages[1]
    with demo.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM population_grid")).scalar() == 0


def test_employees_are_summed_as_ranges() -> None:
    """Bands sum to [Σ low, Σ high]; an unknown band or an open band leaves the top unknown."""
    assert employment(["12", "01"]).as_dict()["employees_min"] == 21
    assert employment(["12", "01"]).as_dict()["employees_max"] == 51
    with_unknown = employment(["12", None]).as_dict()
    assert with_unknown["employees_min"] == 20 and with_unknown["employees_max"] is None
    assert "sans tranche" in with_unknown["reason"]
    assert employment(["53"]).as_dict()["employees_max"] is None
    none = employment([None, None]).as_dict()
    assert none["employees_min"] is None and none["reason"]


def test_panorama_of_93(demo: sa.Engine) -> None:
    """Families, sectors, employees and creations per year, beside parents and peers."""
    with demo.begin() as conn:
        ids = list(
            conn.execute(
                sa.text(
                    "SELECT id FROM structures WHERE departement_code = '93' "
                    "AND status = 'active' ORDER BY id LIMIT 3"
                )
            ).scalars()
        )
        conn.execute(
            sa.text(
                "UPDATE structures SET extra = extra || "
                "jsonb_build_object('trancheEffectifsEtablissement', CAST(:b AS text)), "
                "opened_on = CAST(:d AS date) "
                "WHERE id = :id"
            ),
            [
                {"id": ids[0], "b": "12", "d": "2015-03-01"},
                {"id": ids[1], "b": "01", "d": "2015-06-01"},
                {"id": ids[2], "b": "NN", "d": "2019-01-10"},
            ],
        )
        doc = panorama(conn, "departement", "93")
    assert doc is not None
    assert doc["territory"]["name"] == "Seine-Saint-Denis"
    emp = doc["employment"]
    assert emp["structures_with_band"] == 2
    assert emp["employees_min"] == 21 and emp["employees_max"] is None  # others unknown
    years = {y["year"]: y for y in doc["evolution"]["years"]}
    assert years[2015]["created"] == 2 and years[2019]["created"] == 1
    assert "sans date de création" in doc["evolution"]["reason"]
    assert [p["level"] for p in doc["parents"]] == ["region"]
    assert doc["peers"] and all(p["level"] == "departement" for p in doc["peers"])


def test_panorama_and_coverage_over_http(demo: sa.Engine, client: Any) -> None:
    """JSON, CSV and the French page; problems for bad parameters; HTML 404 in a browser."""
    r = client.get("/territories/departement/93/panorama")
    assert r.status_code == 200 and r.json()["territory"]["code"] == "93"
    r = client.get("/territories/departement/93/panorama?f=csv")
    assert r.status_code == 200 and r.text.startswith("\ufeffsection;indicateur")
    assert "attachment" in r.headers["content-disposition"]
    r = client.get("/territoires/departement/93/panorama")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "Panorama de l&#39;économie sociale et solidaire" in r.text or "Panorama de l'" in r.text
    assert "Emplois (tranches d" in r.text
    assert_html_error(
        client.get("/territoires/departement/99/panorama", headers={"accept": "text/html"}), 404
    )
    r = client.get(f"/coverage?sector={SECTOR}&territoire=departement:93&radii=1,5")
    assert r.status_code == 200
    body = r.json()
    assert body["radii_km"] == [1.0, 5.0] and "_units" not in body
    r = client.get(f"/coverage?sector={SECTOR}&territoire=departement:93&f=geojson")
    assert r.status_code == 200 and r.json()["type"] == "FeatureCollection"
    r = client.get(f"/coverage?sector={SECTOR}&territoire=departement:93&f=csv")
    assert r.status_code == 200 and "population_a_10_km" in r.text.splitlines()[0]
    assert_problem(client.get("/coverage?sector=nope&territoire=departement:93"), 400)
    assert_problem(client.get(f"/coverage?sector={SECTOR}&territoire=93"), 400)
    assert_problem(client.get(f"/coverage?sector={SECTOR}&territoire=departement:93&radii=²"), 400)
    assert_problem(client.get(f"/coverage?sector={SECTOR}&territoire=departement:93&radii=0"), 400)
    assert_problem(client.get(f"/coverage?sector={SECTOR}&territoire=qpv:QP093001"), 400)
    assert_problem(client.get(f"/coverage?sector={SECTOR}&territoire=departement:99"), 404)


def test_cli_coverage_and_panorama_pdf(demo: sa.Engine, database_url: str, tmp_path: Path) -> None:
    """`carteco coverage` writes CSV; `carteco panorama … --format pdf` prints a PDF."""
    env = {**os.environ, "CARTECO_DATABASE_URL": database_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "carteco.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=300,
        )

    res = run("coverage", "--sector", SECTOR, "--territoire", "departement:93", "--format", "csv")
    assert res.returncode == 0, res.stderr
    table = pd.read_csv(pd.io.common.StringIO(res.stdout), sep=";", dtype={"code": str})
    assert len(table) == 39 and table["code"].str.startswith("93").all()
    pdf = tmp_path / "panorama_93.pdf"
    res = run("panorama", "departement", "93", "--format", "pdf", "--out", str(pdf))
    assert res.returncode == 0, res.stderr
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "panorama_93.pdf").write_bytes(pdf.read_bytes())
    pages = [unicodedata.normalize("NFKC", p.extract_text() or "") for p in PdfReader(pdf).pages]
    assert 1 <= len(pages) <= 12
    text = "\n".join(pages)
    for expected in ("Seine-Saint-Denis", "Par famille de l'ESS", "Emplois", "Comparaison"):
        assert expected in text
    bad = run("coverage", "--sector", "nope", "--territoire", "departement:93")
    assert bad.returncode == 2 and "secteur inconnu" in bad.stderr
    doc = json.loads(run("panorama", "departement", "93").stdout)
    assert doc["territory"]["code"] == "93"


@pytest.mark.browser
def test_panorama_of_93_in_chromium(demo: sa.Engine, live_server: str) -> None:
    """The page renders offline at 1400×900 and on a phone (390×844) without sideways scroll."""
    from tests.test_map_browser import Browser

    browser = Browser(live_server)
    shots = ROOT / "docs" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        for name, (w, h) in {"desktop": (1400, 900), "phone": (390, 844)}.items():
            page = browser.page(w, h)
            page.goto(live_server + "/territoires/departement/93/panorama")
            assert page.locator("h1").inner_text().endswith("Seine-Saint-Denis")
            assert page.locator("#familles .barres li").count() >= 1
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{name}: {overflow} px de défilement horizontal"
            page.screenshot(path=str(shots / f"panorama-93-{name}.png"))
            page.screenshot(path=str(ARTIFACTS / f"panorama-93-{name}.png"), full_page=True)
            page.context.close()
        assert not browser.errors, browser.errors
        assert not browser.blocked, browser.blocked
    finally:
        browser.close()
