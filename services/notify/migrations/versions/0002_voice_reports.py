"""voice reports: each item follows its case's newest revision and says whether there is a recording

Revision ID: 0002
Revises: 0001

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("has_audio", sa.Boolean(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("transcription", sa.String(length=16), nullable=True))
        batch_op.create_index(batch_op.f("ix_inbox_items_case_id"), ["case_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_items_case_id"))
        batch_op.drop_column("transcription")
        batch_op.drop_column("has_audio")
        batch_op.drop_column("revision")
