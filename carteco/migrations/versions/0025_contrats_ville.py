"""Contrats de ville (ANCT): one point per contrat de ville, a shipped reference layer.

The ANCT politique de la ville posts (land_posts, 0024) carry the code of their contrat de
ville; this table gives each code its name, its département and the point the ANCT publishes
as its centre, so that the land diagnostic can group the posts by contrat de ville and map them.
Loaded by geodata/loader.py from the manifest (layer kind `contrats_ville`).

Revision ID: 0025_contrats_ville
Revises: 0024_anct_posts
Create Date: 2026-12-01
"""

from alembic import op

revision = "0025_contrats_ville"
down_revision = "0024_anct_posts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create contrats_ville."""
    op.execute(
        """
        CREATE TABLE contrats_ville (
            code text PRIMARY KEY,
            name text NOT NULL,
            departement_code text NOT NULL,
            codgeo text,
            geom geometry(Point, 4326) NOT NULL,
            layer text NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX contrats_ville_dep_idx ON contrats_ville (departement_code)")


def downgrade() -> None:
    """Drop contrats_ville and forget its reference layers (reloaded on the next upgrade)."""
    op.execute("DROP TABLE contrats_ville")
    op.execute("DELETE FROM reference_layers WHERE name LIKE 'contrats\\_ville%'")
