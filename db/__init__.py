"""Database layer: one schema (db.schema), one engine/session factory (db.engine), migrations, roles.

Nothing is imported here, so that `convbench db --help` does not pay for SQLAlchemy's ORM.
"""
