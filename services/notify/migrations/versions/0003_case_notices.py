"""case notices: items follow the case's state and say what their unit was last told; every reminder,
escalation and resolution told to a unit is kept once

Revision ID: 0003
Revises: 0002

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("seq", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("attention", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    items = sa.table(
        "inbox_items",
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.execute(items.update().values(updated_at=items.c.created_at))
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.alter_column("updated_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.create_index(batch_op.f("ix_inbox_items_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "inbox_notices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_notices")),
        sa.UniqueConstraint("case_id", "org_unit_id", "key", name="uq_inbox_notices_case_unit_key"),
    )


def downgrade() -> None:
    op.drop_table("inbox_notices")
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_items_updated_at"))
        batch_op.drop_column("updated_at")
        batch_op.drop_column("attention")
        batch_op.drop_column("seq")
        batch_op.drop_column("state")
