"""links and pending cache invalidations

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "links",
        sa.Column("id", RowId, primary_key=True, autoincrement=True,
                  comment="Row id; generated codes are hashids of it, and listing pages by it."),
        sa.Column("code", sa.String(64), nullable=True,
                  comment="The short code: a custom alias, or hashids(id) set in the same transaction as the insert."),
        sa.Column("is_alias", sa.Boolean(), nullable=False, comment="True when the client chose the code."),
        sa.Column("url", sa.Text(), nullable=False, comment="The long URL, normalised (ASCII, punycode host)."),
        sa.Column("redirect_status", sa.SmallInteger(), nullable=False,
                  comment="HTTP status of the redirect: 301, 302, 307 or 308."),
        sa.Column("query_policy", sa.JSON(), nullable=True,
                  comment="Gateway query policy of this link; NULL means the operator default."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, comment="When the link was created (UTC)."),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  comment="When url, status or policy last changed (UTC)."),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True,
                  comment="When the link was deleted; the row stays so the code is never handed out again."),
        sa.PrimaryKeyConstraint("id", name="pk_links"),
        sa.UniqueConstraint("code", name="uq_links_code"),
        comment="Short links: one row per code ever handed out.",
        sqlite_autoincrement=True,
    )
    op.create_table(
        "pending_invalidations",
        sa.Column("code", sa.String(64), nullable=False, comment="Code whose cached entry may be stale."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  comment="When the write that left it stale happened."),
        sa.PrimaryKeyConstraint("code", name="pk_pending_invalidations"),
        comment="Cache entries to drop once Redis answers again (a write happened while it was down).",
    )


def downgrade() -> None:
    op.drop_table("pending_invalidations")
    op.drop_table("links")
