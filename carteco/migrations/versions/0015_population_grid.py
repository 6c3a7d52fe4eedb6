"""Population on a grid (INSEE Filosofi 200 m squares), when a deployment has it.

The finest population shipped offline is the commune's; a deployment may load the INSEE
200 m grid (`idcar_200m`, `ind`) for finer coverage figures. Squares are stored in
Lambert-93-free form: their WGS 84 outline and centre (EPSG:3035 is their native system).

Revision ID: 0015_population_grid
Revises: 0014_land_context
Create Date: 2026-12-01
"""

from alembic import op

revision = "0015_population_grid"
down_revision = "0014_land_context"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create population_grid; territories get their Lambert-93 centre."""
    op.execute(
        """
        CREATE TABLE population_grid (
            idcar text PRIMARY KEY,
            population double precision NOT NULL CHECK (population >= 0),
            source text NOT NULL,
            geom geometry(Polygon, 4326) NOT NULL,
            centre geometry(Point, 4326) NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX population_grid_centre_idx ON population_grid USING gist (centre)")
    # Where a territory's population is placed for coverage: the centroid of its Lambert-93
    # outline, computed once when the outline is written (not at every coverage request).
    op.execute(
        "ALTER TABLE territories ADD COLUMN centre_l93 geometry(Point, 2154) "
        "GENERATED ALWAYS AS (ST_Centroid(ST_Transform(geom, 2154))) STORED"
    )


def downgrade() -> None:
    """Drop population_grid and the territories' Lambert-93 centres."""
    op.execute("ALTER TABLE territories DROP COLUMN centre_l93")
    op.execute("DROP TABLE population_grid")
