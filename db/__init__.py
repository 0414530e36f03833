"""Database layer: one schema, one engine/session factory, migrations."""
from db.engine import DEFAULT_URL, create_schema, database_url, make_engine, make_sessionmaker, session_scope
from db.schema import Base, Challenge, HeldLabel, Run, Submission, Team

__all__ = [
    "DEFAULT_URL", "Base", "Challenge", "HeldLabel", "Run", "Submission", "Team",
    "create_schema", "database_url", "make_engine", "make_sessionmaker", "session_scope",
]
