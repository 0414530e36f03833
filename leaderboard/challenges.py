"""Challenges: a test set with its held labels, a task, a metric and a quota.

A test set comes from a dataset's test split or from private files (leaderboard.private_labels); either way
its images are stored once as the participants' kit (kit_images: opaque ids, a random order, no metadata) and
its labels in held_labels under the same ids, so what a team downloads and what is scored are the same.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.schema import Challenge, KitImage
from leaderboard import audit, parts, scoring
from leaderboard.errors import ChallengeError
from leaderboard.kit_images import KitFile, clean_image, png_bytes
from leaderboard.private_labels import Source

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


def check_ladder(threshold: float | None) -> float | None:
    """The Ladder's threshold as stored, or a ChallengeError: a fraction of the primary score (every primary score is a
    fraction of the test images, lower is better), so 0 < t < 1; None: a plain board."""
    if threshold is None:
        return None
    if not 0 < threshold < 1:
        raise ChallengeError(f"the Ladder's threshold is a fraction of the error, 0 < t < 1 (e.g. 0.01 for one "
                             f"point), got {threshold}")
    return float(threshold)


def _check_rule(slug: str, quota: int, window_days: float, public_fraction: float = 1.0, final_count: int = 2) -> None:
    if not SLUG.fullmatch(slug):
        raise ChallengeError(f"slug {slug!r}: use 1-64 lowercase letters, digits, '-' or '_'")
    if quota < 1:
        raise ChallengeError(f"quota must be at least 1, got {quota}")
    if not window_days > 0:
        raise ChallengeError(f"window_days must be positive, got {window_days}")
    parts.check_fraction(public_fraction)
    if final_count < 1:
        raise ChallengeError(f"final count must be at least 1, got {final_count}")


def _dataset_test_images(dataset: str, config: dict[str, Any]) -> Iterator[tuple[str, Callable[[], KitFile]]]:
    """(the split's own test id, a maker of its kit file) per test image: a file's bytes stripped of metadata,
    a rendered tensor as a lossless PNG. The decoded kit image is the tensor the split yields."""
    from workers.datasets import load_dataset

    test = load_dataset(dataset, config).test
    if hasattr(test, "paths"):  # FileImages: the file itself, not a decode and re-encode
        for path, image_id in zip(test.paths, test.targets):
            yield str(image_id), partial(_file_image, Path(path))
    else:  # TensorImages: uint8 3 x H x W
        for pixels, image_id in zip(test.images, test.targets):
            yield str(image_id), partial(_tensor_image, pixels)


def _fresh_id(taken: set[str]) -> str:
    image_id = secrets.token_hex(8)
    while image_id in taken:
        image_id = secrets.token_hex(8)
    return image_id


def store_kit(session: Session, challenge: Challenge,
              images: Sequence[tuple[str | None, Any, Callable[[], KitFile]]]) -> int:
    """Store the test images in a random order, and their labels keyed by the images' ids.

    `images`: (id or None, label, a maker of the image's kit file). None: a fresh random id (secrets), which
    nothing public (a seed, a path) rebuilds. A dataset's test split keeps its own public ids (`test_000123`,
    numbered in a seeded shuffle: invariant 1), which its workers and earlier submissions are keyed by. The
    order is a fresh shuffle either way: a position says nothing about a label. Returns the number of images.
    """
    if not images:
        raise ChallengeError("the test set has no images")
    shuffled = list(images)
    secrets.SystemRandom().shuffle(shuffled)
    ids: set[str] = {given for given, _, _ in shuffled if given is not None}
    labels: dict[str, Any] = {}
    batch: list[dict[str, Any]] = []
    for position, (given, label, make) in enumerate(shuffled):
        image_id = given if given is not None else _fresh_id(ids)
        ids.add(image_id)
        kit = make()
        labels[image_id] = label
        batch.append({"challenge_id": challenge.id, "image_id": image_id, "position": position,
                      "filename": f"{image_id}.{kit.ext}", "media_type": kit.media_type, "data": kit.data,
                      "sha256": hashlib.sha256(kit.data).hexdigest()})
        if len(batch) >= 256:  # bounded memory on a large test set
            session.execute(insert(KitImage), batch)
            batch = []
    if batch:
        session.execute(insert(KitImage), batch)
    # Sorted by id: the insertion order of the labels follows nothing either. The parts' seed is a fresh secret,
    # kept nowhere (leaderboard.parts).
    private = parts.split(labels, challenge.task, challenge.public_fraction)
    scoring.store_held_labels(session, challenge.id, dict(sorted(labels.items())), challenge.task, private)
    return len(shuffled)


def _finish(session: Session, challenge: Challenge) -> Challenge:
    from leaderboard.kit import manifest_sha256

    session.flush()
    challenge.kit_sha256 = manifest_sha256(session, challenge)
    session.flush()
    audit.record(session, "challenge.created", "admin", {"dataset": challenge.dataset, "task": challenge.task,
                 "metric": challenge.metric, "quota": challenge.quota, "window_days": challenge.window_days,
                 "ladder_threshold": challenge.ladder_threshold, "kit_sha256": challenge.kit_sha256},
                 challenge.id, f"challenge {challenge.slug}")
    return challenge


def create_challenge(url_or_session: str | Session, slug: str, dataset: str,
                     dataset_options: dict[str, Any] | None = None, *, title: str = "", quota: int = 2,
                     window_days: float = 7.0, public_fraction: float = parts.DEFAULT_FRACTION,
                     final_count: int = 2, ladder_threshold: float | None = None) -> Challenge:
    """Create a challenge on `dataset`'s test split: its images as a kit, its labels held under the kit's ids,
    `public_fraction` of them in the public part (leaderboard.parts); teams mark up to `final_count` finals.
    `ladder_threshold`: the board shows the Ladder's public scores (leaderboard.ladder); None: the exact ones."""
    # Imported here: the site itself never needs the dataset registry.
    from workers.datasets import DatasetError, dataset_class_names, get_dataset, held_test_labels

    _check_rule(slug, quota, window_days, public_fraction, final_count)
    ladder_threshold = check_ladder(ladder_threshold)
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
            challenge = Challenge(slug=slug, title=title or slug, task=entry.task, dataset=dataset,
                                  dataset_config=config, class_names=class_names,
                                  metric=scoring.METRIC_FOR_TASK[entry.task], quota=quota,
                                  window_days=float(window_days), open_book=entry.open_book,
                                  public_fraction=float(public_fraction), final_count=final_count,
                                  ladder_threshold=ladder_threshold)
            session.add(challenge)
            session.flush()
            images = [(test_id, labels[test_id], make) for test_id, make in _dataset_test_images(dataset, config)]
            store_kit(session, challenge, images)
        except DatasetError as exc:  # e.g. a folder missing on this machine; the message names it
            raise ChallengeError(str(exc)) from None
        except KeyError:  # a test image the held labels do not know: the dataset's two readers disagree
            raise ChallengeError(f"dataset {dataset!r}: its test images and test labels disagree") from None
        _finish(session, challenge)
    return challenge


PRIVATE = "private"  # Challenge.dataset of a challenge made from an images folder and a labels file


def create_private_challenge(url_or_session: str | Session, slug: str, source: Source, *, title: str = "",
                             quota: int = 2, window_days: float = 7.0, train_data: str = "",
                             dataset: str = PRIVATE, dataset_options: dict[str, Any] | None = None,
                             public_fraction: float = parts.DEFAULT_FRACTION, final_count: int = 2,
                             ladder_threshold: float | None = None) -> Challenge:
    """Create a challenge from labels only the server holds (leaderboard.private_labels): each image is read
    once, stripped of metadata and stored; afterwards the images folder and the labels file may be deleted.

    `train_data`: where teams get training and validation data, in words (a dataset's name, a path); the kit
    names it. `dataset`/`dataset_options`: the registry's dataset the challenge belongs to (ImageNet's val
    holdout), so that runs on it find it; by default "private", which no run has.
    """
    _check_rule(slug, quota, window_days, public_fraction, final_count)
    ladder_threshold = check_ladder(ladder_threshold)
    if source.task not in scoring.METRIC_FOR_TASK:
        raise ChallengeError(f"task {source.task!r} has no scorer")
    config: dict[str, Any] = (normalised_config(dataset, dataset_options) if dataset != PRIVATE
                              else {"train_data": train_data})
    with _session(url_or_session) as session:
        if session.scalar(select(Challenge.id).where(Challenge.slug == slug)) is not None:
            raise ChallengeError(f"challenge {slug!r} exists")
        challenge = Challenge(slug=slug, title=title or slug, task=source.task, dataset=dataset, dataset_config=config,
                              class_names=list(source.class_names), metric=scoring.METRIC_FOR_TASK[source.task],
                              quota=quota, window_days=float(window_days), open_book=False,
                              public_fraction=float(public_fraction), final_count=final_count,
                              ladder_threshold=ladder_threshold)
        session.add(challenge)
        session.flush()
        store_kit(session, challenge,
                  [(None, label, partial(_file_image, path)) for path, label in source.items])
        if source.wnids:
            wnids = dict(challenge.dataset_config, wnids=list(source.wnids))
            challenge.dataset_config = wnids
        _finish(session, challenge)
    return challenge


def _file_image(path: Path) -> KitFile:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ChallengeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return clean_image(data, path.name)


def _tensor_image(pixels: Any) -> KitFile:
    return KitFile(png_bytes(pixels.permute(1, 2, 0).numpy()), "png", "image/png")  # uint8 3 x H x W


def close_challenge(url_or_session: str | Session, slug: str) -> Challenge:
    """No submission after now (the database's clock); the kit's rules say so, and its manifest hash follows.

    The private scores are published (copied onto the submissions' rows, where the site reads them) and every team
    that marked no final gets its best public ones (leaderboard.final): the private ranking becomes the board.
    """
    from leaderboard.final import fill_defaults
    from leaderboard.throttle import server_now

    with _session(url_or_session) as session:
        challenge = get_challenge(session, slug)
        if challenge.closed_at is not None:
            raise ChallengeError(f"challenge {slug!r} closed already, at {challenge.closed_at:%Y-%m-%d %H:%M} UTC")
        challenge.closed_at = server_now(session.connection())  # the clock the quota counts by
        session.flush()
        published = parts.publish(session, challenge)
        defaults = fill_defaults(session, challenge)
        if challenge.kit_sha256 is not None:
            _finish(session, challenge)
        audit.record(session, "challenge.closed", "admin", {"private_scores_published": published,
                     "default_finals": defaults}, challenge.id, f"challenge {challenge.slug}")
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
