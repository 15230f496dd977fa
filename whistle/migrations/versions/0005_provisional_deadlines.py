"""provisional deadlines (暂定) and cases needing attention (需人工处理)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 09:00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from whistle.db import UTCDateTime

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _flag(name: str) -> sa.Column:
    return sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false())


def upgrade() -> None:
    with op.batch_alter_table('case_record', schema=None) as batch_op:
        batch_op.add_column(_flag('provisional'))
        batch_op.add_column(sa.Column('attention', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('attention_since', UTCDateTime(), nullable=True))
        batch_op.add_column(_flag('feedback_due_provisional'))
        batch_op.create_index(batch_op.f('ix_case_record_provisional'), ['provisional'],
                              unique=False)
    with op.batch_alter_table('summons', schema=None) as batch_op:
        batch_op.add_column(_flag('report_in_provisional'))
        batch_op.add_column(_flag('sign_off_provisional'))
        batch_op.add_column(_flag('next_due_provisional'))


def downgrade() -> None:
    with op.batch_alter_table('summons', schema=None) as batch_op:
        batch_op.drop_column('next_due_provisional')
        batch_op.drop_column('sign_off_provisional')
        batch_op.drop_column('report_in_provisional')
    with op.batch_alter_table('case_record', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_record_provisional'))
        batch_op.drop_column('feedback_due_provisional')
        batch_op.drop_column('attention_since')
        batch_op.drop_column('attention')
        batch_op.drop_column('provisional')
