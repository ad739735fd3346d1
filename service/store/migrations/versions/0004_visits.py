"""Visit analytics: daily aggregates per link, orphan visits, and the record of folded stream entries

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Count = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LINK = "The link's id; 0: the whole service."


def _link_key(comment: str = LINK) -> sa.Column:
    return sa.Column("link_id", RowId, primary_key=True, autoincrement=False, comment=comment)


def _counts() -> list[sa.Column]:
    return [
        sa.Column("visits", Count, nullable=False, comment="Visits that are not bots."),
        sa.Column("bots", Count, nullable=False, comment="Visits of bots (crawlers, previewers, scripts)."),
    ]


def _dimension() -> list[sa.Column]:
    return [
        sa.Column("dimension", sa.String(16), primary_key=True, comment="referrer, country, browser, os or device."),
        sa.Column("value", sa.String(255), primary_key=True, comment="The dimension's value, e.g. a referrer host."),
    ]


def upgrade() -> None:
    op.create_table(
        "visit_days",
        _link_key(),
        sa.Column("day", sa.Date(), primary_key=True, comment="UTC day."),
        *_counts(),
        sa.Column("visitors", Count, nullable=False,
                  comment="Distinct visitors (not bots) that day, by visitor hash."),
        sa.Column("bot_visitors", Count, nullable=False, comment="Distinct bot visitors that day, by visitor hash."),
        sa.PrimaryKeyConstraint("link_id", "day", name="pk_visit_days"),
        comment="Visits per link per UTC day; link_id 0 is the whole service.",
    )
    op.create_table(
        "visit_breakdowns",
        _link_key(),
        sa.Column("day", sa.Date(), primary_key=True, comment="UTC day."),
        *_dimension(),
        *_counts(),
        sa.PrimaryKeyConstraint("link_id", "day", "dimension", "value", name="pk_visit_breakdowns"),
        comment="Visits per link, UTC day and value of a dimension (referrer, country, browser, os, device).",
    )
    op.create_table(
        "visit_month_breakdowns",
        _link_key(),
        sa.Column("month", sa.Date(), primary_key=True, comment="First day of the UTC month."),
        *_dimension(),
        *_counts(),
        sa.PrimaryKeyConstraint("link_id", "month", "dimension", "value", name="pk_visit_month_breakdowns"),
        comment="visit_breakdowns added up per UTC month, so long ranges read few rows.",
    )
    op.create_table(
        "orphan_visit_days",
        sa.Column("day", sa.Date(), primary_key=True, comment="UTC day."),
        sa.Column("status", sa.SmallInteger(), primary_key=True, comment="The answer: 404 or 410."),
        *_counts(),
        sa.PrimaryKeyConstraint("day", "status", name="pk_orphan_visit_days"),
        comment="Visits of codes that were not live (404 unknown, 410 no longer live) per UTC day.",
    )
    op.create_table(
        "visit_totals",
        _link_key("The link's id."),
        *_counts(),
        sa.PrimaryKeyConstraint("link_id", name="pk_visit_totals"),
        comment="Visits of each link so far (what link responses show as `visits`).",
    )
    op.create_table(
        "visit_visitors",
        _link_key(),
        sa.Column("day", sa.Date(), primary_key=True, comment="UTC day."),
        sa.Column("visitor", sa.BigInteger(), primary_key=True, autoincrement=False,
                  comment="The event's 64-bit visitor hash (its salt changes daily and is not stored here)."),
        sa.PrimaryKeyConstraint("link_id", "day", "visitor", name="pk_visit_visitors"),
        comment=(
            "Visitor hashes seen per link and UTC day, to count each visitor once a day. Kept only while "
            "events of that day can still arrive (the stream's retention), then deleted."
        ),
    )
    op.create_table(
        "visit_folds",
        sa.Column("stream", sa.String(200), primary_key=True, comment="The stream's Redis key."),
        sa.Column("first_position", sa.String(40), primary_key=True,
                  comment="The first entry id of the range, zero-padded to sort as text."),
        sa.Column("last_position", sa.String(40), nullable=False, comment="The last entry id of the range."),
        sa.PrimaryKeyConstraint("stream", "first_position", name="pk_visit_folds"),
        comment=(
            "Stream entries already folded into the aggregates, as ranges of entry positions: a "
            "redelivered entry that falls in one is acknowledged and not counted again."
        ),
    )
    op.create_table(
        "visit_streams",
        sa.Column("stream", sa.String(200), primary_key=True, comment="The stream's Redis key."),
        sa.Column("last_position", sa.String(40), nullable=True,
                  comment="The newest entry folded so far (zero-padded)."),
        sa.Column("events", Count, nullable=False, comment="Visit events folded so far."),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, comment="Last fold (UTC)."),
        sa.PrimaryKeyConstraint("stream", name="pk_visit_streams"),
        comment="Each visit stream's position in the aggregates; its row is locked by every fold, in order.",
    )


def downgrade() -> None:
    for table in ("visit_streams", "visit_folds", "visit_visitors", "visit_totals", "orphan_visit_days",
                  "visit_month_breakdowns", "visit_breakdowns", "visit_days"):
        op.drop_table(table)
