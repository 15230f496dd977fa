"""initial read model: reference data, cases, summonses, timeline, outbox

Revision ID: 0001
Revises:
Create Date: 2026-05-01

The read model exactly as the models made it before Alembic (`SQLModel.metadata.create_all`).
The tables are written out once, as a MetaData, so that one definition serves both
`upgrade()` and `whistle.db.migrate`, which brings a database made by that create_all (no
`alembic_version` table) to this shape before stamping it 0001. Later revisions use `op.*`
as usual.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.operations import ops

from whistle.db import UTCDateTime

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def tables() -> sa.MetaData:
    """The read model as of this revision (a fresh MetaData on every call)."""
    md = sa.MetaData()

    def ts(name: str, nullable: bool = True) -> sa.Column:
        return sa.Column(name, UTCDateTime(), nullable=nullable)

    # --- reference data ---
    sa.Table(
        "jurisdiction", md,
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("name_zh", sa.String(100), nullable=False),
        sa.Column("name_en", sa.String(200), nullable=False),
        sa.Column("parent", sa.String(64), nullable=True),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Index("ix_jurisdiction_level", "level"),
        sa.Index("ix_jurisdiction_parent", "parent"),
        sa.Index("ix_jurisdiction_path", "path"),
    )
    sa.Table(
        "department", md,
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("jurisdiction", sa.String(64), nullable=False),
        sa.Column("name_zh", sa.String(100), nullable=False),
        sa.Column("name_en", sa.String(200), nullable=False),
        sa.Column("supervisor", sa.String(64), nullable=True),
        sa.Index("ix_department_jurisdiction", "jurisdiction"),
        sa.Index("ix_department_kind", "kind"),
    )
    sa.Table(
        "category", md,
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("name_zh", sa.String(100), nullable=False),
        sa.Column("name_en", sa.String(200), nullable=False),
    )

    # --- cases ---
    sa.Table(
        "case_record", md,
        sa.Column("case_id", sa.String(64), primary_key=True),
        sa.Column("external_ref", sa.String(128), nullable=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("jurisdiction_path", sa.String(1000), nullable=False),
        sa.Column("source_channel", sa.String(64), nullable=False),
        sa.Column("parties", sa.JSON(), nullable=True),
        sa.Column("departments", sa.JSON(), nullable=True),
        sa.Column("policy_version", sa.String(64), nullable=True),
        sa.Column("overdue", sa.Boolean(), nullable=False),
        sa.Column("unresolved_at_top", sa.Boolean(), nullable=False),
        sa.Column("outcome_kind", sa.String(64), nullable=True),
        sa.Column("outcome_summary", sa.Text(), nullable=True),
        sa.Column("agreement_text", sa.Text(), nullable=True),
        sa.Column("satisfaction", sa.String(32), nullable=True),
        sa.Column("close_reason", sa.String(32), nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        sa.Column("opened_by", sa.String(128), nullable=False),
        ts("opened_at", nullable=False),
        ts("updated_at", nullable=False),
        ts("feedback_due"),
        ts("closed_at"),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        # unnamed, as create_all made it (PostgreSQL names it case_record_external_ref_key)
        sa.UniqueConstraint("external_ref"),
        sa.Index("ix_case_record_category", "category"),
        sa.Index("ix_case_record_jurisdiction_path", "jurisdiction_path"),
        sa.Index("ix_case_record_level", "level"),
        sa.Index("ix_case_record_opened_at", "opened_at"),
        sa.Index("ix_case_record_overdue", "overdue"),
        sa.Index("ix_case_record_owner", "owner"),
        sa.Index("ix_case_record_status", "status"),
    )
    sa.Table(
        "summons", md,
        sa.Column("case_id", sa.String(64), primary_key=True),
        sa.Column("department", sa.String(64), primary_key=True),
        sa.Column("round", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("supervisor", sa.String(64), nullable=True),
        sa.Column("lead", sa.Boolean(), nullable=False, server_default=sa.false()),
        ts("summoned_at", nullable=False),
        ts("report_in_due", nullable=False),
        ts("sign_off_due", nullable=False),
        ts("next_due"),
        ts("reported_in_at"),
        ts("signed_off_at"),
        sa.Column("opinion", sa.Text(), nullable=True),
        sa.Column("actions_taken", sa.Text(), nullable=True),
        sa.Column("return_reason", sa.Text(), nullable=True),
        sa.Column("redispatched_to", sa.String(64), nullable=True),
        sa.Column("extension_status", sa.String(16), nullable=True),
        ts("extension_deadline"),
        sa.Column("extension_reason", sa.Text(), nullable=True),
        sa.Column("overdue", sa.Boolean(), nullable=False),
        sa.Column("escalation", sa.String(32), nullable=True),
        sa.Index("ix_summons_inbox", "department", "status", "next_due"),
    )
    sa.Table(
        "case_event", md,
        sa.Column("case_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(32), nullable=False),
        ts("at", nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("department", sa.String(64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Index("ix_case_event_kind", "kind"),
    )
    sa.Table(
        "outbox", md,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        ts("created_at", nullable=False),
        ts("delivered_at"),
        # unnamed, as create_all made it (PostgreSQL: outbox_case_id_seq_recipient_key)
        sa.UniqueConstraint("case_id", "seq", "recipient"),
        sa.Index("ix_outbox_case_id", "case_id"),
        sa.Index("ix_outbox_delivered_at", "delivered_at"),
        sa.Index("ix_outbox_recipient", "recipient"),
    )
    return md


def upgrade() -> None:
    for table in tables().sorted_tables:
        op.invoke(ops.CreateTableOp.from_table(table))
        for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
            op.invoke(ops.CreateIndexOp.from_index(index))


def downgrade() -> None:
    for table in reversed(tables().sorted_tables):
        op.drop_table(table.name)  # its indexes go with it
