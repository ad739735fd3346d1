"""Coordination: lock fences, the outbox of link events, webhooks and their deliveries

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id(comment: str) -> sa.Column:
    return sa.Column("id", RowId, primary_key=True, autoincrement=True, comment=comment)


def upgrade() -> None:
    op.create_table(
        "fences",
        sa.Column("name", sa.String(64), primary_key=True, comment="The lock's name."),
        sa.Column("token", sa.BigInteger(), nullable=False,
                  comment="Writes carrying an older token than this are refused."),
        sa.PrimaryKeyConstraint("name", name="pk_fences"),
        comment="The newest fencing token each Redis lock's holders wrote with (lock.py).",
    )
    op.create_table(
        "link_events",
        _id("Event id, in order."),
        sa.Column("type", sa.String(32), nullable=False, comment="link.created, link.updated, ..."),
        sa.Column("link_id", RowId, nullable=False, comment="The link's id (no foreign key: purge)."),
        sa.Column("code", sa.String(64), nullable=False, comment="The link's code."),
        sa.Column("owner_id", RowId, nullable=True,
                  comment="The key that owns the link (its owners' webhooks hear of it)."),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False, comment="When it happened (UTC)."),
        sa.Column("data", sa.JSON(), nullable=False, comment="The event's link document (schema v1)."),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True,
                  comment="When the relay published it; NULL: not yet."),
        sa.Column("once_key", sa.String(128), nullable=True,
                  comment="Set on events that must happen once (a link going gone): a second insert is skipped."),
        sa.PrimaryKeyConstraint("id", name="pk_link_events"),
        sa.UniqueConstraint("once_key", name="uq_link_events_once_key"),
        sqlite_autoincrement=True,
        comment=(
            "The outbox of link changes: written in the transaction of each change, published to the "
            "link-event stream and to webhooks by the relay (coordination/relay.py)."
        ),
    )
    op.create_index("ix_link_events_published_at", "link_events", ["published_at"])
    op.create_table(
        "webhooks",
        _id("Row id."),
        sa.Column("url", sa.String(2048), nullable=False, comment="The https endpoint."),
        sa.Column("events", sa.JSON(), nullable=False, comment="The event types it is sent."),
        sa.Column("secret", sa.String(80), nullable=False,
                  comment="HMAC-SHA256 signing secret; answered once, at creation."),
        sa.Column("owner_id", RowId, sa.ForeignKey("api_keys.id", name="fk_webhooks_owner_id_api_keys"),
                  nullable=True,
                  comment="The key that registered it: it hears of that key's links (every link: an admin's)."),
        sa.Column("all_links", sa.Boolean(), nullable=False,
                  comment="True when registered by a key that reaches every link."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, comment="When it was made (UTC)."),
        sa.PrimaryKeyConstraint("id", name="pk_webhooks"),
        sqlite_autoincrement=True,
        comment="HTTPS endpoints told of link events.",
    )
    op.create_table(
        "webhook_deliveries",
        _id("Delivery id."),
        sa.Column("webhook_id", RowId,
                  sa.ForeignKey("webhooks.id", name="fk_webhook_deliveries_webhook_id_webhooks", ondelete="CASCADE"),
                  nullable=False, comment="The webhook."),
        sa.Column("event_id", RowId, nullable=False, comment="The link event delivered."),
        sa.Column("state", sa.String(16), nullable=False, comment="pending, delivered or failed."),
        sa.Column("attempts", sa.Integer(), nullable=False, comment="Tries so far."),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True,
                  comment="When to try again (pending only)."),
        sa.Column("last_status", sa.Integer(), nullable=True, comment="HTTP status of the last try."),
        sa.Column("last_error", sa.String(500), nullable=True, comment="Why the last try failed."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, comment="When it was queued (UTC)."),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True, comment="When the endpoint answered 2xx."),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sqlite_autoincrement=True,
        comment="One event to one webhook: tried with backoff until delivered or failed.",
    )
    op.create_index("ix_webhook_deliveries_state", "webhook_deliveries", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_state", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.drop_index("ix_link_events_published_at", "link_events")
    op.drop_table("link_events")
    op.drop_table("fences")
