"""The coordinator's schema migrations (Alembic), run by `open_database` on every start.

versions/0001 is the schema of the release before migrations (schema 5): a database that release
made is stamped at 0001 and upgraded from there. A new migration: change the tables in _db.py,
then `python -m tokenweave.coordinator.migrations "what changed"` writes the revision from the
difference, to be read and edited before it is committed; tests/coordinator/test_migrations.py
fails while the tables and the migrations disagree.
"""
