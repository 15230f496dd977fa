"""Alembic migration environment of the read model (see env.py)."""
