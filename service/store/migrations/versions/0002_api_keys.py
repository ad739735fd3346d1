"""API keys, and the key that created and last changed each link

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", RowId, primary_key=True, autoincrement=True, comment="Row id."),
        sa.Column("key_id", sa.String(32), nullable=False,
                  comment="The public part of the key (lg_<key_id>_<secret>): safe in logs, metrics and URLs."),
        sa.Column("name", sa.String(64), nullable=False,
                  comment="Unique name an operator gives the key; never reused, so audit trails stay unambiguous."),
        sa.Column("role", sa.String(64), nullable=False, comment="A role of the authorization policy."),
        sa.Column("secret_hash", sa.String(64), nullable=False,
                  comment="Hex SHA-256 of the secret, or HMAC-SHA256 with the server's pepper; never the secret."),
        sa.Column("enabled", sa.Boolean(), nullable=False, comment="False once revoked."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, comment="When it was made (UTC)."),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True,
                  comment="When it stops working (UTC); NULL: never."),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True, comment="When it was revoked (UTC)."),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True,
                  comment="Last authenticated request, written in the background at most about once a minute."),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_id", name="uq_api_keys_key_id"),
        sa.UniqueConstraint("name", name="uq_api_keys_name"),
        comment="API keys: who may call the REST API, in which role. Rows stay after revocation.",
        sqlite_autoincrement=True,
    )
    # Links made before this revision have no owner. SQLite cannot add a
    # foreign key to a table in place: batch mode rebuilds the table there,
    # keeping its AUTOINCREMENT (so no row id, and no code, is reused).
    with op.batch_alter_table("links", table_kwargs={"sqlite_autoincrement": True}) as batch:
        for column, comment in (
            ("created_by_id", "The key that created the link (its owner); NULL for links made before API keys."),
            ("updated_by_id", "The key that last changed the link."),
        ):
            batch.add_column(sa.Column(column, RowId, nullable=True, comment=comment))
            batch.create_foreign_key(f"fk_links_{column}_api_keys", "api_keys", [column], ["id"])
    op.create_index("ix_links_created_by_id_id", "links", ["created_by_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_links_created_by_id_id", table_name="links")
    with op.batch_alter_table("links", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("updated_by_id")
        batch.drop_column("created_by_id")
    op.drop_table("api_keys")
