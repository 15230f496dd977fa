"""Alembic environment of the read model.

Two ways in:

* `whistle.db.migrate(engine)` (what `whistle init`, the API and the worker call) builds the
  Config in code and hands over its own connection in ``config.attributes["connection"]``;
  the migrations then run inside the caller's transaction, on the caller's search_path.
* the `alembic` command with the repository's alembic.ini: the database is
  `sqlalchemy.url` when set there (or with ``-x url=...``), else WHISTLE_DATABASE_URL /
  the settings default.

No schema is named anywhere: tables and alembic_version land in the connection's default
schema (on PostgreSQL the first schema of its search_path).
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import whistle.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from whistle.db import COMPARE_OPTIONS, UTCDateTime

config = context.config
target_metadata = SQLModel.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Autogenerate writes the types a revision should spell: sa.String rather than
    sqlmodel's AutoString, and whistle.db.UTCDateTime imported by name."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        autogen_context.imports.add("from whistle.db import UTCDateTime")
        return "UTCDateTime()"
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def _options(dialect_name: str) -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead
        "render_as_batch": dialect_name == "sqlite",
        **COMPARE_OPTIONS,
        "render_item": render_item,
    }


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url")
    if url:
        return url
    from whistle.settings import get_settings  # reads WHISTLE_DATABASE_URL

    return get_settings().database_url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it."""
    url = _url()
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"},
                      **_options(url.split(":", 1)[0].split("+", 1)[0]))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # whistle.db.migrate: the caller's connection and transaction
        _run(connection)
        return
    from whistle.db import make_engine

    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
