"""Structure statuses for moderation: "pending" (awaiting validation) and "hidden" (deleted,
refused or duplicate at the source).

GoGoCarto exports carry each element's moderation status; until now a deleted or refused
element was imported as active. Public reads show only "active" and "closed" structures
(carteco.models.PUBLIC_STATUSES).

Revision ID: 0008_structure_visibility
Revises: 0007_france_tagging
Create Date: 2026-12-01
"""

from alembic import op

revision = "0008_structure_visibility"
down_revision = "0007_france_tagging"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Allow the statuses "pending" and "hidden"."""
    op.execute("ALTER TABLE structures DROP CONSTRAINT structures_status_check")
    op.execute(
        "ALTER TABLE structures ADD CONSTRAINT structures_status_check "
        "CHECK (status IN ('active', 'closed', 'pending', 'hidden'))"
    )


def downgrade() -> None:
    """Back to active/closed; the structures not public become closed."""
    op.execute("ALTER TABLE structures DROP CONSTRAINT structures_status_check")
    op.execute("UPDATE structures SET status = 'closed' WHERE status IN ('pending', 'hidden')")
    op.execute(
        "ALTER TABLE structures ADD CONSTRAINT structures_status_check "
        "CHECK (status IN ('active', 'closed'))"
    )
