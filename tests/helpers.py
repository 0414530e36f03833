"""Small helpers shared by the test modules."""
from __future__ import annotations

import sqlalchemy as sa

from db.schema import Run


def runs_in(url: str) -> list[Run]:
    """Every row of the runs table, read through a fresh engine (the writer is another process)."""
    engine = sa.create_engine(url)
    with sa.orm.Session(engine) as s:
        found = list(s.scalars(sa.select(Run)))
    engine.dispose()
    return found
