"""voice reports: a recording per report, and each account's spoken language

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
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=8), server_default="zh", nullable=False))
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audio_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("audio_type", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("audio_bytes", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("audio_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_column("audio_seconds")
        batch_op.drop_column("audio_bytes")
        batch_op.drop_column("audio_type")
        batch_op.drop_column("audio_sha256")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("language")
