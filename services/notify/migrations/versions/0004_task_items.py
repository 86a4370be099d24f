"""task items: an inbox item is a case or a task sent down (one per task and unit)

Revision ID: 0004
Revises: 0003

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=8), server_default="case", nullable=False))
        batch_op.add_column(sa.Column("task_id", sa.String(length=36), nullable=True))
        batch_op.alter_column("report_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.alter_column("case_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.create_unique_constraint("uq_inbox_items_task_unit", ["task_id", "org_unit_id"])


def downgrade() -> None:
    op.execute("DELETE FROM inbox_items WHERE kind = 'task'")
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.drop_constraint("uq_inbox_items_task_unit", type_="unique")
        batch_op.alter_column("case_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.alter_column("report_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.drop_column("task_id")
        batch_op.drop_column("kind")
