"""The login throttle leaves the store: failed logins are counted in memory by `webguard.FailureThrottle`, the
one throttle of both servers (serve's wrong API keys too). Every failed login stays in the audit trail.

Revision ID: 0003
Revises: 0002
Create Date: 2026-05-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("login_failures")


def downgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False, index=True),
        sa.Column("name", sa.String(120), nullable=False, index=True),
        sa.Column("addr", sa.String(64), nullable=False, index=True),
    )
