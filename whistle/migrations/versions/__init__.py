"""Alembic revisions of the read model, oldest first."""
