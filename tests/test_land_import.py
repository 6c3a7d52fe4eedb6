"""Land importers on real files (DVF Occitanie, friches des Ardennes, QPV) and hand-written ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import sqlalchemy as sa

from carteco.importer import ImportFileError, run_import
from carteco.importer.mapping import Mapping
from carteco.land import run_land_import
from tests.conftest import FIXTURES, ROOT

LAND = FIXTURES / "foncier"
LAND_TABLES = "land_needs, land_sites, land_transactions, land_layers, commune_indicators"


def reset_land(engine: sa.Engine) -> None:
    """Empty the land layers, the QPV outlines and the registry."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {LAND_TABLES} RESTART IDENTITY CASCADE"))
        conn.execute(sa.text("DELETE FROM territories WHERE level = 'qpv'"))
        conn.execute(
            sa.text("TRUNCATE structures, structure_sources, import_runs RESTART IDENTITY CASCADE")
        )


@pytest.fixture
def land(engine: sa.Engine) -> sa.Engine:
    """A database with no land layer and an empty registry."""
    reset_land(engine)
    yield engine
    reset_land(engine)


def _one(engine: sa.Engine, sql: str, **params: object) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def test_dvf_mutation_of_several_dispositions_counts_once(land: sa.Engine) -> None:
    report = run_land_import(land, "dvf", LAND / "dvf_dedup.csv")
    assert report.status == "succeeded", report.as_dict()
    assert (report.rows_read, report.created) == (7, 4)
    with land.connect() as conn:
        rows = {
            r["id_mutation"]: r
            for r in conn.execute(sa.text("SELECT * FROM land_transactions")).mappings()
        }
    m1 = rows["2019-1"]
    # 3 premises of 100 + 50 + 50 m² sold together for 300 000 €: one sale at 1 500 €/m²,
    # not three sales, and the parcel's 400 m² counted once.
    assert m1["dispositions"] == 3 and m1["kind"] == "local"
    assert m1["valeur_fonciere"] == 300000
    assert m1["surface_bati_m2"] == 200 and m1["surface_terrain_m2"] == 400
    assert m1["price_m2"] == 1500 and m1["price_basis"] == "bati"
    # Premises sold with a flat: no meaningful €/m² for either.
    assert rows["2019-2"]["kind"] == "mixte" and rows["2019-2"]["price_m2"] is None
    # No built surface, and an exchange (not a market price): no €/m².
    assert rows["2019-3"]["price_m2"] is None
    assert rows["2019-4"]["nature_mutation"] == "Echange" and rows["2019-4"]["price_m2"] is None


def test_dvf_real_sample_dedup_and_idempotent(land: sa.Engine) -> None:
    path = LAND / "dvf_qpv_31_2016-2020.csv"
    df = pd.read_csv(path, dtype=str)
    first = run_land_import(land, "dvf", path)
    assert first.status == "succeeded" and first.rejected == 0
    assert first.created == df["id_mutation"].nunique() < len(df)
    again = run_land_import(land, "dvf", path)
    assert (again.created, again.updated, again.unchanged) == (0, 0, first.created)
    expected = df.groupby("id_mutation").size()
    with land.connect() as conn:
        got = dict(
            conn.execute(sa.text("SELECT id_mutation, dispositions FROM land_transactions")).all()
        )
        layer = conn.execute(sa.text("SELECT kind, rows FROM land_layers")).one()
    assert got == expected.to_dict()
    assert tuple(layer) == ("dvf", first.created)


def test_dvf_row_errors_write_nothing(land: sa.Engine) -> None:
    report = run_land_import(land, "dvf", LAND / "dvf_erreurs.csv")
    assert report.status == "rejected"
    messages = [e.message("dvf_erreurs.csv") for e in report.errors]
    assert any("ligne 2" in m and "date_mutation" in m and "2019-13-45" in m for m in messages)
    assert any(
        "ligne 3" in m and "valeur_fonciere" in m and "nombre attendu" in m for m in messages
    )
    assert any("ligne 4" in m and "code_commune" in m for m in messages)
    assert any("ligne 6" in m and "même mutation E-4" in m for m in messages)
    assert any("ligne 7" in m and "bornes WGS84" in m for m in messages)
    assert _one(land, "SELECT count(*) FROM land_transactions") == 0
    assert _one(land, "SELECT status FROM import_runs ORDER BY id DESC LIMIT 1") == "rejected"
    # Asked to, the valid rows are written and the others still reported.
    partial = run_land_import(land, "dvf", LAND / "dvf_erreurs.csv", skip_invalid=True)
    assert partial.status == "succeeded" and partial.created == 2 and partial.rejected == 5


def test_missing_required_column_is_a_file_error(land: sa.Engine, tmp_path: Path) -> None:
    bad = tmp_path / "dvf.csv"
    bad.write_text("id_mutation,date_mutation\n1,2020-01-01\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="valeur_fonciere"):
        run_land_import(land, "dvf", bad)


def test_friches_csv_then_polygons(land: sa.Engine) -> None:
    csv_path = LAND / "friches_ardennes_cnig.csv"
    report = run_land_import(land, "friches", csv_path)
    assert report.status == "succeeded" and report.created == 164
    poly = run_land_import(land, "friches", LAND / "friches_ardennes_polygones.geojson")
    assert poly.status == "succeeded" and poly.updated == 164
    again = run_land_import(land, "friches", LAND / "friches_ardennes_polygones.geojson")
    assert again.unchanged == 164 and again.updated == 0
    assert run_land_import(land, "friches", csv_path).unchanged == 164
    expected = (
        pd.read_csv(csv_path, dtype=str)["site_statut"]
        .str.replace("friche ", "", regex=False)
        .str.replace(" ", "_", regex=False)
        .value_counts()
        .to_dict()
    )
    with land.connect() as conn:
        got = dict(
            conn.execute(sa.text("SELECT status, count(*) FROM land_sites GROUP BY 1")).all()
        )
        n_fp = conn.execute(sa.text("SELECT count(footprint) FROM land_sites")).scalar_one()
        deps = conn.execute(sa.text("SELECT DISTINCT departement_code FROM land_sites")).all()
    assert got == expected
    assert n_fp == 164 and deps == [("08",)]


def test_polygons_of_unknown_friches_are_row_errors(land: sa.Engine) -> None:
    report = run_land_import(land, "friches", LAND / "friches_ardennes_polygones.geojson")
    assert report.status == "rejected" and report.rejected == 164
    assert "importez d'abord le fichier CNIG" in report.errors[0].reason


def test_qpv_import_tags_structures_like_geopandas(land: sa.Engine) -> None:
    med = LAND / "mediation_numerique_31_08_2022.csv"
    rep = run_import(
        land,
        med,
        source="mediation-31-08",
        mapping=Mapping.from_file(LAND / "mediation_numerique.mapping.toml"),
        skip_invalid=True,
    )
    assert rep.status == "succeeded"
    qpv = run_land_import(land, "qpv", LAND / "qpv_31_2015.geojson", vintage="2015")
    assert qpv.status == "succeeded" and qpv.created == 19
    assert (
        run_land_import(land, "qpv", LAND / "qpv_31_2015.geojson", vintage="2015").unchanged == 19
    )
    pts = pd.read_csv(med, dtype=str)
    bad_rows = {e.row for e in rep.errors}
    pts = pts[[i + 2 not in bad_rows for i in range(len(pts))]]
    gdf = gpd.GeoDataFrame(
        pts,
        geometry=gpd.points_from_xy(pts.longitude.astype(float), pts.latitude.astype(float)),
        crs=4326,
    )
    polys = gpd.read_file(LAND / "qpv_31_2015.geojson")
    joined = gpd.sjoin(gdf, polys[["code_qp", "geometry"]], predicate="intersects")
    expected = sorted(zip(joined["nom"], joined["code_qp"], strict=True))
    with land.connect() as conn:
        got = sorted(
            tuple(r)
            for r in conn.execute(
                sa.text("SELECT name, qpv_code FROM structures WHERE qpv_code IS NOT NULL")
            ).all()
        )
        level = conn.execute(
            sa.text(
                "SELECT DISTINCT level, departement_code, vintage FROM territories "
                "WHERE code LIKE 'QP031%'"
            )
        ).all()
    assert got == expected and len(got) >= 3
    assert level == [("qpv", "31", "2015")]


def test_sites_and_needs_row_errors(land: sa.Engine, tmp_path: Path) -> None:
    needs = tmp_path / "besoins.csv"
    needs.write_text(
        "identifiant;structure_siret;structure_nom;type_local;surface_min_m2;surface_max_m2\n"
        "N1;12345678901234;Asso;atelier;100;200\n"
        "N2;;Asso;piscine;100;200\n"
        "N3;;Asso;bureau;300;100\n"
        "N4;;;bureau;10;20\n",
        encoding="utf-8",
    )
    report = run_land_import(land, "besoins", needs)
    assert report.status == "rejected" and report.rejected == 4
    reasons = {(e.row, e.column): e.reason for e in report.errors}
    assert "Luhn" in reasons[(2, "structure_siret")]
    assert "valeur inconnue" in reasons[(3, "type_local")]
    assert "inférieure" in reasons[(4, "surface_max_m2")]
    assert "obligatoire" in reasons[(5, "structure_nom")]
    sites = tmp_path / "sites.csv"
    sites.write_text(
        "identifiant;nom;type;usages;surface_m2;code_insee\n"
        "A;Local;local vacant;bureau;-5;93066\n"
        "B;Local;château;bureau;10;93066\n"
        "C;Local;local vacant;bureau;10;\n",
        encoding="utf-8",
    )
    report = run_land_import(land, "sites", sites)
    assert report.rejected == 3
    assert _one(land, "SELECT count(*) FROM land_sites") == 0
    ok = run_land_import(land, "sites", LAND / "sites_93_exemple.csv")
    assert ok.status == "succeeded" and ok.created == 6


def test_cli_land_import_reports_rows(land: sa.Engine, database_url: str) -> None:
    env = {**os.environ, "CARTECO_DATABASE_URL": database_url}
    cmd = [sys.executable, "-m", "carteco.cli", "land", "import", "dvf"]
    bad = subprocess.run(
        [*cmd, str(LAND / "dvf_erreurs.csv")], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert bad.returncode == 1, bad.stderr
    assert "dvf_erreurs.csv, ligne 3, colonne « valeur_fonciere »" in bad.stderr
    good = subprocess.run(
        [*cmd, str(LAND / "dvf_dedup.csv")], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert good.returncode == 0, good.stderr
    assert "créées 4" in good.stdout


def test_geo_dvf_bare_land_price_per_m2(land: sa.Engine, tmp_path: Path) -> None:
    # geo-DVF layout: a plot sale over two parcels, one of them with two crops (one row each).
    path = tmp_path / "geo_dvf.csv"
    path.write_text(
        "id_mutation,date_mutation,numero_disposition,nature_mutation,valeur_fonciere,"
        "code_commune,id_parcelle,type_local,surface_reelle_bati,code_nature_culture,"
        "surface_terrain,longitude,latitude\n"
        "T-1,2021-03-04,1,Vente,100000.0,08105,08105000AB0001,,,S,200,4.72,49.77\n"
        "T-1,2021-03-04,1,Vente,100000.0,08105,08105000AB0001,,,J,300,4.72,49.77\n"
        "T-1,2021-03-04,1,Vente,100000.0,08105,08105000AB0002,,,T,500,4.72,49.77\n",
        encoding="utf-8",
    )
    report = run_land_import(land, "dvf", path)
    assert report.status == "succeeded" and report.created == 1
    with land.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM land_transactions")).mappings().one()
    assert row["kind"] == "terrain" and row["surface_terrain_m2"] == 1000
    assert row["price_m2"] == 100 and row["price_basis"] == "terrain"
    assert row["departement_code"] == "08"


def test_sites_given_by_address_are_geocoded(land: sa.Engine, tmp_path: Path) -> None:
    """A site with an address and no coordinates is placed by the local geocoder."""
    from carteco.geocoding.reference import load_addresses

    bal = Path(__file__).parent / "fixtures" / "geocoding" / "bal_54084_mont-bonvillers.csv"
    with land.begin() as conn:
        load_addresses(conn, [bal])
    try:
        path = tmp_path / "sites_adresses.csv"
        path.write_text(
            "identifiant;nom;type;statut;surface_m2;adresse;code_insee\n"
            "A1;Local de la rue Joffre;local vacant;disponible;120;2 rue Joffre;54084\n"
            "A2;Terrain introuvable;terrain public;disponible;900;999 allée des Nuages;54084\n",
            encoding="utf-8",
        )
        report = run_land_import(land, "sites", path)
        assert report.status == "succeeded", report.as_dict()
        with land.connect() as conn:
            rows = {
                r.source_id: r
                for r in conn.execute(
                    sa.text(
                        "SELECT source_id, ST_X(geom) AS lon, ST_Y(geom) AS lat, extra "
                        "FROM land_sites WHERE source_id IN ('A1', 'A2')"
                    )
                )
            }
        # 2 rue Joffre in the BAL: 5.833891, 49.322171.
        assert abs(rows["A1"].lon - 5.833891) < 1e-4 and abs(rows["A1"].lat - 49.322171) < 1e-4
        assert rows["A1"].extra["geocodage"]["type"] == "housenumber"
        assert rows["A2"].lon is None  # not found at street level: stays placed by its commune
    finally:
        with land.begin() as conn:
            conn.execute(sa.text("TRUNCATE geo_addresses, geo_streets, geocode_cache"))
            conn.execute(sa.text("DELETE FROM geo_meta"))


def test_geodvf_local_repeated_per_crop_counts_once(land: sa.Engine, tmp_path: Path) -> None:
    """A local whose row repeats for each crop of its parcel counts its surface once."""
    header = (
        "id_mutation,date_mutation,numero_disposition,nature_mutation,valeur_fonciere,"
        "code_commune,code_departement,id_parcelle,lot1_numero,type_local,surface_reelle_bati,"
        "nombre_pieces_principales,nature_culture,surface_terrain,longitude,latitude\n"
    )
    rows = [
        # One shop of 100 m² on a parcel of two crops: two rows, one local.
        "2022-1,2022-03-01,1,Vente,200000,93070,93,930700000A0001,,Local industriel. commercial"
        " ou assimilé,100,0,sols,50,2.33,48.91",
        "2022-1,2022-03-01,1,Vente,200000,93070,93,930700000A0001,,Local industriel. commercial"
        " ou assimilé,100,0,jardins,30,2.33,48.91",
        # Two identical shops sold together (same crop): two locals.
        "2022-2,2022-04-01,1,Vente,300000,93070,93,930700000A0002,,Local industriel. commercial"
        " ou assimilé,75,0,sols,20,2.33,48.91",
        "2022-2,2022-04-01,1,Vente,300000,93070,93,930700000A0002,,Local industriel. commercial"
        " ou assimilé,75,0,sols,20,2.33,48.91",
    ]
    path = tmp_path / "geodvf.csv"
    path.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    rep = run_land_import(land, "dvf", path)
    assert rep.status == "succeeded", rep.as_dict()
    with land.connect() as conn:
        got = dict(
            conn.execute(
                sa.text("SELECT id_mutation, price_m2 FROM land_transactions ORDER BY 1")
            ).all()
        )
    assert got == {"2022-1": 2000.0, "2022-2": 2000.0}
