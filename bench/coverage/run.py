"""Coverage benchmark: one sector over every Île-de-France commune, at 1 M structures.

    .venv/bin/python -m bench.coverage.run                # 1,000,000 synthetic structures
    .venv/bin/python -m bench.coverage.run --n 100000

Data: the synthetic registry of bench/features (points inside the IDF communes in proportion
to their population, one random sector each; the database `carteco_bench_coverage` is reused
when it already holds N structures). Measures, warm (the first run is discarded), the median
of --repeat runs of `carteco.observatoire.coverage.coverage(region 11, sector)` — exact
Lambert-93 nearest, population within 1/2/5/10 km per commune — beside its SQL floor: one
plain KNN query per commune centre (nearest by the index order, no exactness pass, no Python),
and prints both times and the ratio. Goal (#18): under 5 s warm.
"""

from __future__ import annotations

import argparse
import statistics
import time

import sqlalchemy as sa

import bench.features.run as synthetic
from carteco.observatoire.coverage import coverage
from carteco.sectors import load_taxonomy

FLOOR = """
SELECT c.code, ST_Distance(ST_Transform(n.geom, 2154), c.centre_l93)
  FROM territories c
  CROSS JOIN LATERAL (
      SELECT s.geom FROM structures s
       WHERE s.status = 'active' AND s.geom IS NOT NULL AND s.sectors && CAST(:codes AS text[])
       ORDER BY s.geom <-> ST_Transform(c.centre_l93, 4326)
       LIMIT 1) n
 WHERE c.level IN ('commune', 'arrondissement') AND c.region_code = '11'
"""


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    """Seconds one call takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--sector", default="alimentation")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-reuse", action="store_true")
    args = ap.parse_args()
    # Its own database: never the one bench/features may be using at the same time.
    synthetic.DB_NAME = "carteco_bench_coverage"
    url = synthetic.prepare(args.n, reuse=not args.no_reuse)
    codes = sorted(load_taxonomy().descendants(args.sector))
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        n_sector = conn.execute(
            sa.text("SELECT count(*) FROM structures WHERE sectors && CAST(:c AS text[])"),
            {"c": codes},
        ).scalar_one()
        result: dict = {}

        def carteco() -> None:
            result.update(coverage(conn, "region", "11", [args.sector]) or {})

        def floor() -> None:
            conn.execute(sa.text(FLOOR), {"codes": codes}).all()

        carteco()
        floor()  # warm-up: discarded
        ours = [timed(carteco) for _ in range(args.repeat)]
        base = [timed(floor) for _ in range(args.repeat)]
    engine.dispose()
    a, b = statistics.median(ours), statistics.median(base)
    print(f"structures: {args.n:,}; of sector {args.sector}: {n_sector:,}")
    print(f"units (communes and arrondissements of IDF): {result.get('units')}")
    print(
        f"carteco coverage (exact nearest, reach 1/2/5/10 km): {a:.2f} s (median of {args.repeat})"
    )
    print(f"SQL floor (plain KNN per commune):                 {b:.2f} s")
    print(f"ratio carteco / floor: {a / b:.2f}x   goal: < 5 s -> {'OK' if a < 5 else 'NOT MET'}")


if __name__ == "__main__":
    main()
