"""Challenges: a dataset's test split with its held labels, a task, a metric and a quota."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.schema import Challenge
from leaderboard import scoring
from leaderboard.errors import ChallengeError

SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def normalised_config(dataset: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """Every option of the dataset, defaults filled in, as JSON would store it: equal runs compare equal."""
    from workers.datasets import config_dict, dataset_config

    try:
        config = config_dict(dataset_config(dataset, dict(options or {})))
    except KeyError as exc:  # an unknown dataset
        raise ChallengeError(exc.args[0]) from None
    except ValueError as exc:  # ConfigError: an unknown or ill-typed option, named in the message
        raise ChallengeError(str(exc)) from None
    return json.loads(json.dumps(config, sort_keys=True, default=str))  # default=str: a Path option


@contextmanager
def _session(url_or_session: str | Session) -> Iterator[Session]:
    if isinstance(url_or_session, Session):
        yield url_or_session  # the caller's transaction: the caller commits
    else:
        with session_scope(url_or_session) as session:
            yield session


def create_challenge(url_or_session: str | Session, slug: str, dataset: str,
                     dataset_options: dict[str, Any] | None = None, *, title: str = "", quota: int = 2,
                     window_days: float = 7.0) -> Challenge:
    """Create a challenge on `dataset`'s test split and store its held labels."""
    # Imported here: the site itself never needs the dataset registry.
    from workers.datasets import DatasetError, dataset_class_names, get_dataset, held_test_labels

    if not SLUG.fullmatch(slug):
        raise ChallengeError(f"slug {slug!r}: use 1-64 lowercase letters, digits, '-' or '_'")
    if quota < 1:
        raise ChallengeError(f"quota must be at least 1, got {quota}")
    if not window_days > 0:
        raise ChallengeError(f"window_days must be positive, got {window_days}")
    config = normalised_config(dataset, dataset_options)
    entry = get_dataset(dataset)
    if entry.task not in scoring.METRIC_FOR_TASK:
        raise ChallengeError(f"dataset {dataset!r} has task {entry.task!r}, which has no scorer")
    with _session(url_or_session) as session:
        if session.scalar(select(Challenge.id).where(Challenge.slug == slug)) is not None:
            raise ChallengeError(f"challenge {slug!r} exists")
        try:
            # Class names and held labels only: loading the dataset would render or index every split
            # (and import torch) for nothing; a synthetic challenge then needed seconds and a gigabyte.
            class_names, labels = dataset_class_names(dataset, config), held_test_labels(dataset, config)
        except DatasetError as exc:  # e.g. a folder missing on this machine; the message names it
            raise ChallengeError(str(exc)) from None
        challenge = Challenge(slug=slug, title=title or slug, task=entry.task, dataset=dataset, dataset_config=config,
                              class_names=class_names, metric=scoring.METRIC_FOR_TASK[entry.task], quota=quota,
                              window_days=float(window_days))
        session.add(challenge)
        session.flush()
        scoring.store_held_labels(session, challenge.id, labels, entry.task)
    return challenge


def find_challenge(session: Session, dataset: str, dataset_options: dict[str, Any] | None) -> Challenge | None:
    """The (oldest) challenge on this dataset with the same options, defaults filled in; None if there is none."""
    config = normalised_config(dataset, dataset_options)
    for challenge in session.scalars(select(Challenge).where(Challenge.dataset == dataset).order_by(Challenge.id)):
        if challenge.dataset_config == config:
            return challenge
    return None


def get_challenge(session: Session, slug: str) -> Challenge:
    challenge = session.scalar(select(Challenge).where(Challenge.slug == slug))
    if challenge is None:
        raise ChallengeError(f"no challenge {slug!r}")
    return challenge


def list_challenges(session: Session) -> list[Challenge]:
    return list(session.scalars(select(Challenge).order_by(Challenge.id)))
