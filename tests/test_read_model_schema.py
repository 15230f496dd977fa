"""A read model made before migrations upgrades in place: a column a newer version added is
added to an old table, then the database is stamped and migrated like any other."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from whistle.db import alembic_config, baseline_metadata, make_engine, migrate


def test_migrate_adds_a_column_a_pre_migrations_table_lacks(database_url):
    engine = make_engine(database_url)
    baseline_metadata().create_all(engine)  # what the pre-Alembic create_all made
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE summons DROP COLUMN lead"))  # as an older version made it
    assert "lead" not in {c["name"] for c in inspect(engine).get_columns("summons")}
    migrate(engine)
    assert "lead" in {c["name"] for c in inspect(engine).get_columns("summons")}
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    assert current == set(ScriptDirectory.from_config(alembic_config()).get_heads())
    engine.dispose()
