"""account security: lockout, refresh tokens, and an append-only log of sign-ins and account changes

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

APPEND_ONLY = {
    "sqlite": [
        "CREATE TRIGGER auth_events_no_update BEFORE UPDATE ON auth_events "
        "BEGIN SELECT RAISE(ABORT, 'auth_events is append-only'); END",
        "CREATE TRIGGER auth_events_no_delete BEFORE DELETE ON auth_events "
        "BEGIN SELECT RAISE(ABORT, 'auth_events is append-only'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION auth_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'auth_events is append-only'; END $$",
        "CREATE TRIGGER auth_events_append_only BEFORE UPDATE OR DELETE ON auth_events "
        "FOR EACH ROW EXECUTE FUNCTION auth_events_append_only()",
    ],
}


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_logins", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=36), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["username"],
            ["accounts.username"],
            name=op.f("fk_refresh_tokens_username_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_refresh_tokens")),
    )
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refresh_tokens_family"), ["family"], unique=False)
        batch_op.create_index(batch_op.f("ix_refresh_tokens_username"), ["username"], unique=False)
    op.create_table(
        "auth_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_events")),
    )
    with op.batch_alter_table("auth_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_auth_events_username"), ["username"], unique=False)
    for statement in APPEND_ONLY[op.get_bind().dialect.name]:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER auth_events_append_only ON auth_events")
        op.execute("DROP FUNCTION auth_events_append_only()")
    op.drop_table("auth_events")
    op.drop_table("refresh_tokens")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("password_changed_at")
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_logins")
