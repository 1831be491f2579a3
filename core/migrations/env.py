"""Alembic environment: uses the engine handed over by ``core.migrate``."""

from alembic import context
from sqlalchemy import Engine

config = context.config
engine: Engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
