"""Île-de-France land layers on real files: Cartofriches, LOVAC, geo-dvf; the 93 and 94
diagnostics built from them, checked against independent pandas computations."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest
import sqlalchemy as sa
from markupsafe import escape as html_escape
from pypdf import PdfReader

from carteco.demo import DEMO_LAND, DEMO_SOURCES
from carteco.diagnostics.indicators import foncier_indicators
from carteco.diagnostics.report import SCHEMA_FILE, build_report
from carteco.importer import run_import
from carteco.importer.mapping import Mapping
from carteco.land import run_land_import
from tests.conftest import ARTIFACTS, ROOT, reset_land

LAYERS = {layer.kind: layer for layer in DEMO_LAND}
CARTOFRICHES = LAYERS["friches"].path
LOVAC = LAYERS["lovac"].path
GEODVF = LAYERS["dvf"].path
ADULTES_RELAIS = LAYERS["adultes_relais"].path
FONJEP = LAYERS["fonjep_qpv"].path


@pytest.fixture(scope="module")
def idf(engine: sa.Engine) -> Iterator[dict[str, Any]]:
    """The IDF demo registry and land layers, imported as `carteco demo` does."""
    reset_land(engine)
    for d in DEMO_SOURCES:
        rep = run_import(
            engine,
            d.path,
            source=d.source,
            mapping=Mapping.from_file(d.mapping_path),
            skip_invalid=d.skip_invalid,
        )
        assert rep.status == "succeeded"
    reports = {}
    for layer in DEMO_LAND:
        reports[layer.kind] = run_land_import(
            engine,
            layer.kind,
            layer.path,
            source=layer.source,
            description=layer.description,
            vintage=layer.vintage,
        )
        assert reports[layer.kind].status == "succeeded", reports[layer.kind].as_dict()
    with engine.connect() as conn:
        docs = {dep: foncier_indicators(conn, dep) for dep in ("93", "94")}
    yield {"reports": reports, "docs": docs}
    reset_land(engine)


def test_cartofriches_import_keeps_status_and_origin(
    idf: dict[str, Any], engine: sa.Engine
) -> None:
    """Every site is kept with its status (unknown stays unknown) and its inventory."""
    df = pd.read_csv(CARTOFRICHES, dtype=str)
    assert idf["reports"]["friches"].created == len(df)
    with engine.connect() as conn:
        got = dict(
            conn.execute(sa.text("SELECT status, count(*) FROM land_sites GROUP BY status")).all()
        )
        origins = dict(
            conn.execute(sa.text("SELECT origin, count(*) FROM land_sites GROUP BY origin")).all()
        )
    assert got == {"potentielle": 385, "avec_projet": 243, "inconnu": 93}
    assert origins == df["source_cartofriches"].value_counts().to_dict()
    again = run_land_import(engine, "friches", CARTOFRICHES, source=LAYERS["friches"].source)
    assert (again.created, again.updated, again.unchanged) == (0, 0, len(df))


def test_lovac_blank_rates_stay_null(idf: dict[str, Any], engine: sa.Engine) -> None:
    """A withheld LOVAC rate is null, never 0; the commune rows say why."""
    df = pd.read_csv(LOVAC, dtype={"code_commune": str})
    rate = "prop_logements_vacants_2ans_plus_parc_prive_01012021_pct"
    with engine.connect() as conn:
        stored = dict(
            conn.execute(
                sa.text(
                    "SELECT commune_code, value FROM commune_indicators "
                    "WHERE indicator = 'logements_vacants_2ans_pct'"
                )
            ).all()
        )
    assert len(stored) == len(df)
    for code, value in zip(df["code_commune"], df[rate], strict=True):
        if pd.isna(value):
            assert stored[code] is None
        else:
            assert stored[code] == pytest.approx(float(value))
    communes = {c["code"]: c for c in idf["docs"]["93"]["communes"]}
    for code, value in zip(df["code_commune"], df[rate], strict=True):
        if code in communes:
            ctx = communes[code]["context"]
            if pd.isna(value):
                assert ctx["logements_vacants_2ans_pct"] is None and ctx["reason"]
            else:
                assert ctx["logements_vacants_2ans_pct"] == pytest.approx(float(value))


def test_geodvf_national_format_groups_mutations(idf: dict[str, Any], engine: sa.Engine) -> None:
    """geo-dvf: one transaction per mutation; premises prices from plain sales only."""
    df = pd.read_csv(GEODVF, dtype=str)
    assert idf["reports"]["dvf"].created == df["id_mutation"].nunique()
    with engine.connect() as conn:
        rows = {
            r.id_mutation: r
            for r in conn.execute(
                sa.text(
                    "SELECT id_mutation, dispositions, kind, surface_bati_m2, price_m2 "
                    "FROM land_transactions"
                )
            )
        }
    for mid, g in df.groupby("id_mutation"):
        assert rows[mid].dispositions == len(g)
        types = set(g["type_local"].dropna())
        if types == {"Local industriel. commercial ou assimilé"}:
            bati = g["surface_reelle_bati"].astype(float).sum()
            assert rows[mid].kind == "local"
            assert rows[mid].surface_bati_m2 == pytest.approx(bati)
    prices = idf["docs"]["93"]["departement_figures"]["prices"]
    market = df.groupby("id_mutation")["nature_mutation"].first()
    assert prices["market_sales"] == int((market == "Vente").sum())


def test_93_and_94_reports_say_where_the_friches_are(
    idf: dict[str, Any], engine: sa.Engine
) -> None:
    """Friches by status and inventory, LOVAC context, QPV figures absent with their reason."""
    df = pd.read_csv(CARTOFRICHES, dtype={"code_commune": str})
    for dep in ("93", "94"):
        doc = idf["docs"][dep]
        mine = df[df["code_commune"].str[:2] == dep]
        rows = doc["supply"]["friches_by_origin_status"]
        assert sum(r["sites"] for r in rows) == len(mine)
        expected = mine.groupby("source_cartofriches").size().to_dict()
        got: dict[str, int] = {}
        for r in rows:
            got[r["origin"]] = got.get(r["origin"], 0) + r["sites"]
        assert got == expected
        assert doc["layers"]["lovac"]["available"]
        assert doc["qpv_figures"]["available"] is False and doc["qpv_figures"]["reason"]
        # No friche of Cartofriches carries a surface: no surface figure, no zero.
        for row in doc["supply"]["by_kind_status"]:
            assert row["surface_m2"] is None and row["surface_known"] == 0
        with engine.connect() as conn:
            _doc, _layers, html = build_report(conn, dep)
        assert "Friches par inventaire d'origine et par statut" in html
        assert "Appel à projet Fonds Friches" in html
        assert "statut inconnu" in html
        assert "Chiffres par QPV non établis" in html


def _registry_sirets() -> set[str]:
    """SIRETs of the demo registry, read from its raw files (Luhn-valid 14-digit ones)."""
    from carteco.identifiers import siret_error

    cols = {"siae_idf_2019-07.csv": "SIRET", "mediation_numerique_idf_2022.csv": "siret"}
    out: set[str] = set()
    for d in DEMO_SOURCES:
        if d.file in cols:
            raw = pd.read_csv(d.path, dtype=str)[cols[d.file]].dropna()
            digits = raw.str.replace(r"\D", "", regex=True)
            out |= {v for v in digits if len(v) == 14 and not siret_error(v)}
    return out


def test_politique_ville_context_of_93_and_94_matches_pandas(
    idf: dict[str, Any], engine: sa.Engine
) -> None:
    """Posts, amounts, employers and registry employers recomputed from the raw ANCT files."""
    ar = pd.read_csv(ADULTES_RELAIS, dtype=str)
    fj = pd.read_csv(FONJEP, dtype=str)
    registry = _registry_sirets()
    assert idf["reports"]["adultes_relais"].created == len(ar)
    assert idf["reports"]["fonjep_qpv"].created == len(fj)
    for dep in ("93", "94"):
        pv = idf["docs"][dep]["politique_ville"]
        a = ar[(ar["insee_dep"] == dep) & (ar["annee"] == "2023")]
        f = fj[(fj["insee_dep"] == dep) & (fj["annee"] == "2023")]
        assert pv["available"] and pv["reason"] is None
        assert pv["scope"] == "postes financés en 2023, source ANCT"
        assert pv["programs"]["adultes_relais"]["posts"] == len(a) > 0
        assert pv["programs"]["fonjep_qpv"]["posts"] == len(f) > 0
        assert pv["posts"] == len(a) + len(f)
        assert pv["programs"]["adultes_relais"]["amount_eur"] == pytest.approx(
            a["montant"].astype(float).sum()
        )
        assert pv["programs"]["fonjep_qpv"]["amount_eur"] == pytest.approx(
            f["montant"].astype(float).sum()
        )
        assert pv["amount_eur"] == pytest.approx(
            a["montant"].astype(float).sum() + f["montant"].astype(float).sum()
        )
        employers = set(a["code_tiers"]) | {
            "nom:" + n for n in f["raison_sociale"].str.strip().str.upper()
        }
        assert pv["employers"] == len(employers)
        matched = set(a["code_tiers"]) & registry
        assert pv["employers_in_registry"] == len(matched)
        assert {e["siret"] for e in pv["registry_employers"]} == matched
        for e in pv["registry_employers"]:
            assert e["posts"] == int((a["code_tiers"] == e["siret"]).sum())
        with engine.connect() as conn:
            doc, _layers, html = build_report(conn, dep)
        assert doc["politique_ville"]["posts"] == pv["posts"]
        lever = next(r for r in doc["recommendations"] if r["rule"] == "politique_ville_employeurs")
        assert lever["figures"]["postes"] == len(a) + len(f)
        assert lever["figures"]["employeurs_du_registre"] == len(matched)
        assert "postes financés en 2023, source ANCT" in lever["text"]
        top = [c for c in pv["contrats_ville"]["contrats"] if c["posts"]][:3]
        assert lever["figures"]["contrats_de_ville"] == {c["code"]: c["posts"] for c in top}
        assert f"{top[0]['name']} ({top[0]['posts']})" in lever["text"]
        assert "Politique de la ville" in html
        assert "postes financés en 2023, source ANCT" in html
        for e in pv["registry_employers"]:
            assert html_escape(e["name"]) in html


CV_FILE = ROOT / "geodata" / "data" / "contrats_ville_idf_anct.geojson"


def _contrats_ville_raw() -> pd.DataFrame:
    """The shipped contrats de ville (one point each), read from the file itself."""
    feats = json.loads(CV_FILE.read_text(encoding="utf-8"))["features"]
    return pd.DataFrame(
        [
            {
                **f["properties"],
                "lon": f["geometry"]["coordinates"][0],
                "lat": f["geometry"]["coordinates"][1],
            }
            for f in feats
        ]
    )


def test_contrats_ville_of_93_and_94_match_pandas(
    idf: dict[str, Any], engine: sa.Engine, client: Any
) -> None:
    """Posts, schemes, amounts and employers per contrat de ville, recomputed from the raw ANCT
    posts and the shipped contrats de ville; posts without a code counted apart, with why."""
    ar = pd.read_csv(ADULTES_RELAIS, dtype=str, keep_default_na=False)
    fj = pd.read_csv(FONJEP, dtype=str, keep_default_na=False)
    ar["employer"] = ar["code_tiers"]
    fj["employer"] = "nom:" + fj["raison_sociale"].str.strip().str.upper()
    ar["program"], fj["program"] = "adultes_relais", "fonjep_qpv"
    posts = pd.concat([ar, fj])
    posts = posts[posts["annee"] == "2023"]
    posts["montant"] = posts["montant"].astype(float)
    cvs = _contrats_ville_raw().set_index("code_cv")
    registry = _registry_sirets()
    for dep in ("93", "94"):
        cv = idf["docs"][dep]["politique_ville"]["contrats_ville"]
        assert cv["available"] and cv["reason"] is None
        mine = posts[posts["insee_dep"] == dep]
        rows = {c["code"]: c for c in cv["contrats"]}
        # Every contrat de ville of the département is listed, with or without posts.
        expected_codes = set(cvs.index[cvs["code_dep"] == dep]) | (
            set(mine["code_cv"]) & set(cvs.index)
        )
        assert set(rows) == expected_codes
        for code, c in rows.items():
            g = mine[mine["code_cv"] == code]
            assert c["name"] == cvs.loc[code, "lib_cv"]
            assert c["departement_code"] == cvs.loc[code, "code_dep"] == dep
            assert (c["lon"], c["lat"]) == pytest.approx(
                (cvs.loc[code, "lon"], cvs.loc[code, "lat"])
            )
            assert c["posts"] == len(g)
            assert c["programs"] == {
                "adultes_relais": int((g["program"] == "adultes_relais").sum()),
                "fonjep_qpv": int((g["program"] == "fonjep_qpv").sum()),
            }
            assert c["amount_eur"] == pytest.approx(g["montant"].sum())
            assert c["employers"] == g["employer"].nunique()
            sirets = set(g.loc[g["program"] == "adultes_relais", "code_tiers"])
            assert c["employers_in_registry"] == len(sirets & registry)
        # The contrats de ville named in issue #16 carry the posts the ANCT gives them.
        named = {"93": ("CV349", "CV350", "CV351", "CV353"), "94": ("CV357",)}[dep]
        assert all(rows[code]["posts"] > 0 for code in named)
        if dep == "93":
            assert rows["CV350"]["name"] == "CA Est Ensemble" and rows["CV350"]["posts"] == 73
            assert rows["CV913"]["posts"] == 0  # Villemomble: no post in 2023, a true zero
        # Posts without a code: apart, with the reason, never dropped.
        blank = mine[mine["code_cv"].str.strip() == ""]
        apart = cv["unattributed"]
        assert len(blank) > 0
        assert [(u["reason"], u["posts"]) for u in apart] == [
            ("code de contrat de ville non renseigné dans le fichier de l'ANCT", len(blank))
        ]
        assert apart[0]["amount_eur"] == pytest.approx(blank["montant"].sum())
        pv = idf["docs"][dep]["politique_ville"]
        assert sum(c["posts"] for c in rows.values()) + apart[0]["posts"] == pv["posts"]
        layer = idf["docs"][dep]["layers"]["contrats_ville"]
        assert layer["available"] and "contrats_ville_idf" in layer["source"]

        with engine.connect() as conn:
            doc, layers, html = build_report(conn, dep)
        block = html.split('id="contrats-ville"', 1)[1].split("</section>", 1)[0]
        assert "Par contrat de ville" in html and "Postes sans contrat de ville connu" in block
        for c in cv["contrats"]:
            assert f"{html_escape(c['name'])} ({c['code']})" in block
        assert "centre du contrat de ville tel que le publie l'ANCT" in block
        # The map: one circle per contrat de ville, its area proportional to its posts.
        data = json.loads(
            re.search(
                r'<script type="application/json" data-carte="carte-contrats-ville">(.*?)</script>',
                block,
                re.S,
            ).group(1)
        )
        layer_cv = next(lay for lay in data["layers"] if lay["name"] == "Contrats de ville")
        assert len(layer_cv["features"]) == len(rows)
        radius = {
            f["properties"]["t"][1]: f["properties"]["s"]["radius"] for f in layer_cv["features"]
        }
        most = max(c["posts"] for c in rows.values())
        for code, c in rows.items():
            if c["posts"]:
                want = max(24 * (c["posts"] / most) ** 0.5, 3.0)
                assert radius[code] == pytest.approx(want, abs=0.01)
            else:
                assert radius[code] == 3.5
        legend = [e["label"] for e in data["legend"]]
        assert f"{most} postes" in legend
        assert len(layers["contrats_ville"]["features"]) == len(rows)
        # The same figures in the JSON of the API, valid against the published schema.
        r = client.get(f"/diagnostics/foncier/{dep}.json")
        assert r.status_code == 200
        served = r.json()
        assert served["politique_ville"]["contrats_ville"] == json.loads(json.dumps(cv))
        jsonschema.validate(served, json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def test_contrats_ville_layer_missing_gives_null_with_reason(
    idf: dict[str, Any], engine: sa.Engine
) -> None:
    """Without the contrats de ville layer: null with "couche non chargée", never zeros."""
    with engine.connect() as conn:
        conn.execute(sa.text("DELETE FROM contrats_ville"))
        doc = foncier_indicators(conn, "93")
        _doc, _layers, html = build_report(conn, "93")
        conn.rollback()  # the shipped layer stays loaded for the other tests
    cv = doc["politique_ville"]["contrats_ville"]
    assert cv["available"] is False and cv["reason"] == "couche non chargée"
    assert cv["contrats"] is None and cv["unattributed"] is None
    assert doc["politique_ville"]["posts"] > 0  # the département's totals stay
    assert doc["layers"]["contrats_ville"]["available"] is False
    assert "couche non chargée" in doc["layers"]["contrats_ville"]["note"]
    assert "Postes non répartis par contrat de ville : couche non chargée" in html
    assert 'data-carte="carte-contrats-ville"' not in html


def test_anct_posts_reimport_and_row_errors(
    idf: dict[str, Any], engine: sa.Engine, tmp_path: Path
) -> None:
    """Re-importing changes nothing; a bad SIRET, amount or département names row and column
    and the file writes nothing."""
    again = run_land_import(
        engine, "adultes_relais", ADULTES_RELAIS, source=LAYERS["adultes_relais"].source
    )
    assert (again.created, again.updated, again.unchanged) == (
        0,
        0,
        idf["reports"]["adultes_relais"].created,
    )
    with engine.connect() as conn:
        siret_names = conn.execute(
            sa.text(
                "SELECT count(*) FROM land_posts WHERE program = 'fonjep_qpv' AND siret IS NOT NULL"
            )
        ).scalar()
    assert siret_names == 0  # a FONJEP code_tiers is a name, never a SIRET
    bad = tmp_path / "ar_bad.csv"
    bad.write_text(
        "id_poste,code_tiers,raison_sociale,annee,montant,code_cv,insee_dep,insee_reg\n"
        "X1,50996337700131,ASSO A,2023,100,CV1,93,11\n"
        "X2,50996337700130,ASSO B,2023,-5,CV1,93,11\n"
        "X3,50996337700130,ASSO C,2023,100,CV1,999,11\n",
        encoding="utf-8",
    )
    rep = run_land_import(engine, "adultes_relais", bad, source="ar-bad")
    assert rep.status == "rejected"
    got = {(e.row, e.column) for e in rep.errors}
    assert got == {(2, "code_tiers"), (3, "montant"), (4, "insee_dep")}, rep.as_dict()
    assert all(e.reason for e in rep.errors)
    with engine.connect() as conn:
        assert not conn.execute(
            sa.text("SELECT count(*) FROM land_posts WHERE source = 'ar-bad'")
        ).scalar()


def test_93_pdf_report_printed_by_chromium(
    idf: dict[str, Any], database_url: str, tmp_path: Path
) -> None:
    """`carteco diagnostic foncier 93 --pdf`: a one-page summary first, then the report."""
    out = tmp_path / "d93"
    res = subprocess.run(
        [sys.executable, "-m", "carteco.cli", "diagnostic", "foncier", "93", "--pdf"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "CARTECO_DATABASE_URL": database_url},
        cwd=ROOT,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    pdf = out / "rapport.pdf"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "diagnostic_93.pdf").write_bytes(pdf.read_bytes())
    reader = PdfReader(pdf)
    # NFKC: Chromium's fonts set ligatures ("ﬀ") that text extraction keeps.
    pages = [unicodedata.normalize("NFKC", p.extract_text() or "") for p in reader.pages]
    assert 6 <= len(pages) <= 60
    first = pages[0]
    assert "L'essentiel en une page" in first and "Seine-Saint-Denis" in first
    assert "Leviers proposés" in first or "Aucune" in first or "Offre" in first
    # The summary holds on its page: the next page starts the detailed report.
    assert "L'essentiel en une page" not in pages[1]
    text = "\n".join(pages)
    for expected in ("Pression foncière", "Offre foncière", "Recommandations", "Méthode"):
        assert expected in text
    assert "Appel à projet Fonds Friches" in text
    assert "Par contrat de ville" in text and "CA Est Ensemble (CV350)" in text
    # The printed maps (network off) carry their basemap's place names and their legend.
    assert "Limite du département" in text and "Gare ou station" in text
    assert "Noisy-le-Grand" in text and "VAL-D'OISE" in text.upper()
