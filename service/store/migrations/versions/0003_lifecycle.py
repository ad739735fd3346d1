"""link lifecycle (validity window, visit limit, flags, fallback), titles and tags

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Nullable or defaulted columns only: plain ADD COLUMN everywhere, no table
    # rebuild, and the release before this one keeps working on the new schema.
    columns = [
        sa.Column("title", sa.String(200), nullable=True, comment="A title for people (<= 200)."),
        sa.Column("valid_since", sa.DateTime(timezone=True), nullable=True,
                  comment="Before this the link answers 404, as if it did not exist yet."),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True,
                  comment="From this on the link is gone (410 or its fallback)."),
        sa.Column("max_visits", sa.BigInteger(), nullable=True,
                  comment="Visitors the link admits in total; NULL: no limit."),
        sa.Column("visit_count", sa.BigInteger(), nullable=False, server_default="0",
                  comment="Visits counted toward max_visits, as of the last flush of the replicas' counters."),
        sa.Column("flags", sa.SmallInteger(), nullable=False, server_default="0",
                  comment="Named bits (service.lifecycle.state.LinkFlags): disabled by its owner, blocked by an admin."),
        sa.Column("fallback_url", sa.Text(), nullable=True,
                  comment="Where visitors go once the link is no longer live, instead of 410."),
        sa.Column("gone_at", sa.DateTime(timezone=True), nullable=True,
                  comment="When the link ran out of visits (expiry is valid_until); purge uses it."),
    ]
    for column in columns:
        op.add_column("links", column)
    op.create_table(
        "link_tags",
        sa.Column("link_id", RowId, sa.ForeignKey("links.id", name="fk_link_tags_link_id_links"), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("link_id", "tag", name="pk_link_tags"),
        comment="Tags of links, in lower case (tags compare case-insensitively).",
    )
    op.create_index("ix_link_tags_tag", "link_tags", ["tag"])


def downgrade() -> None:
    op.drop_index("ix_link_tags_tag", table_name="link_tags")
    op.drop_table("link_tags")
    with op.batch_alter_table("links", table_kwargs={"sqlite_autoincrement": True}) as batch:
        for name in ("gone_at", "fallback_url", "flags", "visit_count", "max_visits", "valid_until",
                     "valid_since", "title"):
            batch.drop_column(name)
