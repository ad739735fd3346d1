"""Monthly visit breakdowns rolled up once a month closes, instead of written by every fold

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Months not listed in visit_rollups are read from the daily rows, so the
monthly rows written before this revision (every fold wrote them) are never
read until the consumer rolls their month up again: a roll-up replaces a
month's rows.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "visit_rollups",
        sa.Column("month", sa.Date(), primary_key=True, comment="First day of the UTC month."),
        sa.Column("rolled_at", sa.DateTime(timezone=True), nullable=False, comment="When (UTC)."),
        sa.PrimaryKeyConstraint("month", name="pk_visit_rollups"),
        comment=(
            "Months whose visit_month_breakdowns rows were added up from visit_breakdowns once no more "
            "events of the month could arrive; stats read the monthly rows of these months only."
        ),
    )
    if op.get_bind().dialect.name == "sqlite":
        return  # SQLite keeps no comments
    op.create_table_comment(
        "visit_month_breakdowns",
        "visit_breakdowns added up per UTC month, so long ranges read few rows; complete for the "
        "months in visit_rollups only.",
        existing_comment="visit_breakdowns added up per UTC month, so long ranges read few rows.",
    )


def downgrade() -> None:
    op.drop_table("visit_rollups")
