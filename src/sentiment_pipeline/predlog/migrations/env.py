"""Alembic's environment: run on the connection ``schema.upgrade`` passes in (no alembic.ini,
no URL of its own)."""

from alembic import context

from sentiment_pipeline.predlog.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
