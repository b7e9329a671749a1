"""Alembic environment: runs the fleet server's migrations against the configured URL."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from fleet import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from fleet.core.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=url.startswith("sqlite"))
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
