"""Land layers v2: Cartofriches sites (status unknown, origin of the record) and commune
context indicators (LOVAC vacancy rates).

Cartofriches lists 93 Île-de-France sites whose status is "inconnu": they are kept as such,
never guessed. Each site keeps the inventory it comes from (Fonds Friches, MTE, Basias/Basol,
Ademe…) in `origin`, so the report can count friches by status and by source.

Revision ID: 0014_land_context
Revises: 0013_reconcile, 0004_land
Create Date: 2026-12-01
"""

from alembic import op

revision = "0014_land_context"
# Also after 0004_land, whose tables it alters (the early migrations are parallel branches).
down_revision = ("0013_reconcile", "0004_land")
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Status "inconnu" and `origin` for land sites, a "lovac" layer kind, commune_indicators."""
    op.execute("ALTER TABLE land_sites DROP CONSTRAINT land_sites_status_check")
    op.execute(
        "ALTER TABLE land_sites ADD CONSTRAINT land_sites_status_check CHECK (status IN "
        "('sans_projet', 'avec_projet', 'reconvertie', 'potentielle', 'disponible', 'occupe', "
        "'inconnu'))"
    )
    op.execute("ALTER TABLE land_sites ADD COLUMN origin text")
    op.execute("ALTER TABLE land_layers DROP CONSTRAINT land_layers_kind_check")
    op.execute(
        "ALTER TABLE land_layers ADD CONSTRAINT land_layers_kind_check "
        "CHECK (kind IN ('dvf', 'friches', 'sites', 'besoins', 'qpv', 'lovac'))"
    )
    op.execute(
        """
        CREATE TABLE commune_indicators (
            source text NOT NULL,
            commune_code text NOT NULL,
            indicator text NOT NULL,
            value double precision,
            vintage text,
            extra jsonb NOT NULL DEFAULT '{}',
            PRIMARY KEY (source, commune_code, indicator)
        )
        """
    )
    op.execute(
        "CREATE INDEX commune_indicators_lookup_idx ON commune_indicators (indicator, commune_code)"
    )


def downgrade() -> None:
    """Drop commune_indicators and `origin`; sites of unknown status are removed."""
    op.execute("DROP TABLE commune_indicators")
    op.execute("DELETE FROM land_layers WHERE kind = 'lovac'")
    op.execute("ALTER TABLE land_layers DROP CONSTRAINT land_layers_kind_check")
    op.execute(
        "ALTER TABLE land_layers ADD CONSTRAINT land_layers_kind_check "
        "CHECK (kind IN ('dvf', 'friches', 'sites', 'besoins', 'qpv'))"
    )
    op.execute("ALTER TABLE land_sites DROP COLUMN origin")
    op.execute("DELETE FROM land_sites WHERE status = 'inconnu'")
    op.execute("ALTER TABLE land_sites DROP CONSTRAINT land_sites_status_check")
    op.execute(
        "ALTER TABLE land_sites ADD CONSTRAINT land_sites_status_check CHECK (status IN "
        "('sans_projet', 'avec_projet', 'reconvertie', 'potentielle', 'disponible', 'occupe'))"
    )
