"""tasks down: tasks sent to the liaison units under some units, their recipients and every answer

Revision ID: 0005
Revises: 0004

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("answer", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("sender_username", sa.String(length=64), nullable=False),
        sa.Column("sender_role", sa.String(length=32), nullable=False),
        sa.Column("sender_unit_id", sa.Integer(), nullable=True),
        sa.Column("sender", sa.JSON(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("units", sa.JSON(), nullable=False),
        sa.Column("recipient_count", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_note", sa.Text(), nullable=True),
        sa.Column("request_key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("sender_username", "request_key", name="uq_tasks_sender_key"),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tasks_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_tasks_sender_unit_id"), ["sender_unit_id"], unique=False)

    op.create_table(
        "task_recipients",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("area_path", sa.String(length=255), nullable=False),
        sa.Column("unit", sa.JSON(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer_id", sa.Integer(), nullable=True),
        sa.Column("number", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_task_recipients_task_id_tasks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_recipients")),
        sa.UniqueConstraint("task_id", "org_unit_id", name="uq_task_recipients_task_unit"),
    )
    with op.batch_alter_table("task_recipients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_recipients_org_unit_id"), ["org_unit_id"], unique=False)

    op.create_table(
        "task_answers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("number", sa.Float(), nullable=True),
        sa.Column("audio", sa.JSON(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_task_answers_task_id_tasks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_answers")),
        sa.UniqueConstraint("task_id", "org_unit_id", "request_key", name="uq_task_answers_task_unit_key"),
    )
    with op.batch_alter_table("task_answers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_answers_task_id"), ["task_id"], unique=False)


def downgrade() -> None:
    op.drop_table("task_answers")
    op.drop_table("task_recipients")
    op.drop_table("tasks")
