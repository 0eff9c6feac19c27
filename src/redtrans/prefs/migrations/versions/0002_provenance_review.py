"""Provenance and review of judgments (issue 30): who set each score (the expert, or an accepted suggestion),
the candidate order the expert saw, the candidate a rewrite started from, time spent, a reviewer's decision.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-20
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS: list[tuple[str, Any]] = [
    ("set_by", sa.JSON),
    ("display_order", sa.JSON),
    ("rewrite_from", sa.Integer),
    ("lead_time_s", sa.Float),
    ("review", sa.String(16)),
    ("reviewed_by", sa.Integer),
    ("reviewed_at", sa.DateTime),
]


def upgrade() -> None:
    with op.batch_alter_table("judgments") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("judgments") as batch:
        for name, _kind in reversed(COLUMNS):
            batch.drop_column(name)
