"""The read model upgrades in place: a column a newer version adds is added to an old table."""

from __future__ import annotations

from sqlalchemy import inspect, text

from whistle.db import create_tables, make_engine


def test_create_tables_adds_a_column_an_older_table_lacks(database_url):
    engine = make_engine(database_url)
    create_tables(engine)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE summons DROP COLUMN lead"))  # as an older version made it
    assert "lead" not in {c["name"] for c in inspect(engine).get_columns("summons")}
    create_tables(engine)
    assert "lead" in {c["name"] for c in inspect(engine).get_columns("summons")}
    engine.dispose()
