"""Territory tagging computed in the database, and the reference-data loader."""

import sqlalchemy as sa

from geodata.loader import load_all, read_manifest, verify_checksums


def test_montreuil_point(clean_registry: sa.Engine) -> None:
    with clean_registry.begin() as conn:
        row = conn.execute(
            sa.text(
                """
                INSERT INTO structures (name, source, source_id, content_hash, geom)
                VALUES ('Mairie de Montreuil', 't', '1', '-',
                        ST_SetSRID(ST_MakePoint(2.4417, 48.8620), 4326))
                RETURNING commune_code, ept_code, epci_code, departement_code, region_code
                """
            )
        ).one()
    assert tuple(row) == ("93048", "200057875", "200054781", "93", "11")


def test_paris_arrondissement(clean_registry: sa.Engine) -> None:
    with clean_registry.begin() as conn:
        row = conn.execute(
            sa.text(
                """
                INSERT INTO structures (name, source, source_id, content_hash, geom)
                VALUES ('Place de la République', 't', '2', '-',
                        ST_SetSRID(ST_MakePoint(2.3631, 48.8675), 4326))
                RETURNING commune_code, arrondissement_code, ept_code
                """
            )
        ).one()
    assert tuple(row) == ("75056", "75103", "T1")


def test_every_commune_interior_point(clean_registry: sa.Engine) -> None:
    with clean_registry.begin() as conn:
        conn.execute(
            sa.text(
                """
                INSERT INTO structures (name, source, source_id, content_hash, geom)
                SELECT name, 'pos', code, '-', ST_PointOnSurface(geom)
                  FROM territories WHERE level = 'commune'
                """
            )
        )
        total, wrong = conn.execute(
            sa.text(
                """
                SELECT count(*), count(*) FILTER (
                    WHERE commune_code IS DISTINCT FROM source_id
                       OR departement_code IS DISTINCT FROM left(source_id, 2)
                       OR region_code IS DISTINCT FROM '11')
                  FROM structures WHERE source = 'pos'
                """
            )
        ).one()
    assert (total, wrong) == (1266, 0)


def test_moving_a_point_retags_it(clean_registry: sa.Engine) -> None:
    with clean_registry.begin() as conn:
        sid = conn.execute(
            sa.text(
                """
                INSERT INTO structures (name, source, source_id, content_hash, geom)
                VALUES ('Itinérante', 't', '3', '-', ST_SetSRID(ST_MakePoint(2.4417, 48.862), 4326))
                RETURNING id
                """
            )
        ).scalar_one()
        conn.execute(
            sa.text(
                "UPDATE structures SET geom = ST_SetSRID(ST_MakePoint(2.3522, 48.8566), 4326) "
                "WHERE id = :id"
            ),
            {"id": sid},
        )
        code, version = conn.execute(
            sa.text("SELECT commune_code, version FROM structures WHERE id = :id"), {"id": sid}
        ).one()
    assert code == "75056" and version == 2


def test_geodata_manifest_and_idempotent_load(engine: sa.Engine) -> None:
    verify_checksums()
    layers = read_manifest()
    assert all(la.licence and la.source and la.vintage and len(la.sha256) == 64 for la in layers)
    with engine.begin() as conn:
        results = load_all(conn)
        counts = dict(
            conn.execute(sa.text("SELECT level, count(*) FROM territories GROUP BY 1")).all()
        )
        stations = conn.execute(sa.text("SELECT count(*) FROM stations")).scalar_one()
    assert {r.action for r in results} == {"unchanged"}
    assert counts["commune"] == 1266 and counts["arrondissement"] == 20
    assert counts["ept"] == 12 and counts["epci"] == 52
    assert counts["departement"] == 96 and counts["region"] == 13
    assert stations == 1234
