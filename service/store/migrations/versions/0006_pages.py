"""password-protected links: the argon2id hash of a link's password

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: a plain ADD COLUMN everywhere, and links without a password pay nothing.
    op.add_column("links", sa.Column(
        "password_hash", sa.String(255), nullable=True,
        comment="argon2id hash (PHC string) of the link's password; NULL: no password. Never returned.",
    ))


def downgrade() -> None:
    with op.batch_alter_table("links", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("password_hash")
