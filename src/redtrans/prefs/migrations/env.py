"""Alembic environment of the annotation store: migrations run on the connection `Store` hands over (in its
transaction), never from an ini file. `redtrans.prefs.store.migrate` is the only caller."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
