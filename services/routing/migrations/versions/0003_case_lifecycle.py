"""case lifecycle: stages, the current handler and its ladder, the durable clock, idempotent actions,
closure and rating, and the outbox of case_updated events

Revision ID: 0003
Revises: 0002

Cases routed before this revision get their first handler as the current one, no ladder (they are
reminded at their deadline instead of escalated) and one timer at their deadline.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_BEFORE = "routed"  # the only state there was


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stage", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("seq", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("handler", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("ladder", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("overseers", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("reporter_unit", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("area_path", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("stage_started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("escalations", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("rating", sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column("rating_note", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("merged_into", sa.String(length=36), nullable=True))

    cases = sa.table(
        "cases",
        sa.column("id", sa.String),
        sa.column("state", sa.String),
        sa.column("routed_event", sa.JSON),
        sa.column("routed_at", sa.DateTime(timezone=True)),
        sa.column("deadline_at", sa.DateTime(timezone=True)),
        sa.column("handler", sa.JSON),
        sa.column("ladder", sa.JSON),
        sa.column("overseers", sa.JSON),
        sa.column("stage_started_at", sa.DateTime(timezone=True)),
        sa.column("next_due_at", sa.DateTime(timezone=True)),
    )
    connection = op.get_bind()
    op.execute(cases.update().values(ladder=[], overseers=[], stage_started_at=cases.c.routed_at))
    for case_id, routed_event in connection.execute(sa.select(cases.c.id, cases.c.routed_event)).all():
        connection.execute(
            cases.update().where(cases.c.id == case_id).values(handler=routed_event["handler"])
        )

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.alter_column("handler", existing_type=sa.JSON(), nullable=False)
        batch_op.alter_column("ladder", existing_type=sa.JSON(), nullable=False)
        batch_op.alter_column("overseers", existing_type=sa.JSON(), nullable=False)
        batch_op.alter_column("stage_started_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.create_index(
            "ix_cases_next_due_at",
            ["next_due_at"],
            unique=False,
            postgresql_where=sa.text("next_due_at IS NOT NULL"),
            sqlite_where=sa.text("next_due_at IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_cases_area_path",
            ["area_path"],
            unique=False,
            postgresql_ops={"area_path": "text_pattern_ops"},
        )
        batch_op.create_index(batch_op.f("ix_cases_merged_into"), ["merged_into"], unique=False)

    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("action_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_case_events_case_action", ["case_id", "action_id"])

    op.create_table(
        "case_timers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_case_timers_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_timers")),
        sa.UniqueConstraint("case_id", "stage", "kind", name="uq_case_timers_case_stage_kind"),
    )
    open_cases = sa.select(cases.c.id, sa.literal(1), sa.literal("due"), cases.c.deadline_at).where(
        cases.c.state == OPEN_BEFORE
    )
    timers = sa.table(
        "case_timers",
        sa.column("case_id", sa.String),
        sa.column("stage", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("due_at", sa.DateTime(timezone=True)),
    )
    op.execute(timers.insert().from_select(["case_id", "stage", "kind", "due_at"], open_cases))
    op.execute(cases.update().where(cases.c.state == OPEN_BEFORE).values(next_due_at=cases.c.deadline_at))

    op.create_table(
        "outbox",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("exchange", sa.String(length=100), nullable=False),
        sa.Column("routing_key", sa.String(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_sent_at"))
        batch_op.drop_index(batch_op.f("ix_outbox_created_at"))
    op.drop_table("outbox")
    op.drop_table("case_timers")
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_case_events_case_action", type_="unique")
        batch_op.drop_column("fingerprint")
        batch_op.drop_column("action_id")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_merged_into"))
        batch_op.drop_index("ix_cases_area_path")
        batch_op.drop_index("ix_cases_next_due_at")
        for column in (
            "merged_into",
            "rated_at",
            "rating_note",
            "rating",
            "escalations",
            "overdue_at",
            "closed_at",
            "resolved_at",
            "next_due_at",
            "stage_started_at",
            "area_path",
            "reporter_unit",
            "overseers",
            "ladder",
            "handler",
            "seq",
            "stage",
        ):
            batch_op.drop_column(column)
