"""Baselines predict on the participants' kit (issue #14): before a suite's jobs run, the driver writes the kit of
each challenge on their datasets once under <storage root>/_kits/<slug>/ and points the jobs at it (JobSpec.kit),
so a baseline and every team are scored on the same images, under the same ids, by the same gate.

The kit comes from the database (leaderboard.kit.write_kit: the challenge's kit_images, which the runner role may
read); no held label is in it. A challenge without a kit (one created before kits existed) leaves its jobs on the
dataset's own test split, whose ids its held labels are keyed by.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from db.engine import session_scope
from db.schema import Challenge, KitImage
from leaderboard.challenges import find_challenge
from leaderboard.errors import LeaderboardError
from workers.datasets import dataset_class_names
from workers.datasets.kit import MANIFEST, KitError, check_classes, read_kit
from workers.jobs import JobSpec
from workers.tasks import tasks_scored_as

KITS = "_kits"  # under the storage root, beside the job folders: every node reads the kit where it reads its job
# The tasks whose loop writes its test predictions for JobSpec.kit: every classifier's (workers/train.py, the
# classical pipeline). Detection's loop (workers/detection/loop.py) still predicts on the dataset's test split.
KIT_TASKS = frozenset(tasks_scored_as("classification"))
log = logging.getLogger("convbench.kits")


def _manifest_sha256(folder: Path) -> str | None:
    try:
        return hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
    except OSError:
        return None


def _has_kit(session: Session, challenge: Challenge) -> bool:
    if challenge.kit_sha256:
        return True
    count = session.scalar(select(func.count()).select_from(KitImage).where(KitImage.challenge_id == challenge.id))
    return bool(count)


def write_kit_once(session: Session, challenge: Challenge, root: Path) -> Path:
    """<root>/_kits/<slug>/, written from the database unless a complete copy of this very kit is there already
    (its manifest's SHA-256 is the challenge's kit_sha256). Written beside and moved in whole, so a driver killed
    mid-write leaves no half kit under the name."""
    from leaderboard.kit import write_kit

    folder = root / KITS / challenge.slug
    if folder.is_dir() and (challenge.kit_sha256 is None or _manifest_sha256(folder) == challenge.kit_sha256):
        try:
            read_kit(folder)
            return folder
        except KitError as exc:
            log.warning("kit %s is incomplete or altered (%s): writing it again", folder, exc)
    staging = folder.parent / f".{challenge.slug}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    write_kit(session, challenge.slug, staging)
    if challenge.kit_sha256 and _manifest_sha256(staging) != challenge.kit_sha256:
        shutil.rmtree(staging, ignore_errors=True)
        raise KitError(f"the kit written for challenge {challenge.slug!r} does not match its recorded kit_sha256")
    if folder.exists():
        old = folder.parent / f".{challenge.slug}.{os.getpid()}.old"
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    staging.rename(folder)
    read_kit(folder)  # what the workers will check: every image of the kit order, against the manifest
    return folder


def _kit_for(url: str, root: Path, job: JobSpec) -> str | None:
    """The kit folder (relative to `root`) of the challenge on the job's dataset; None if there is none."""
    with session_scope(url) as session:
        challenge = find_challenge(session, job.dataset, job.dataset_options)
        if challenge is None or not _has_kit(session, challenge):
            return None
        folder = write_kit_once(session, challenge, root)
    # The driver checks what the workers will (the images against the manifest, above; the model's class k is the
    # kit's class k, here): a bad kit is named before hours of training, not after them.
    check_classes(folder, dataset_class_names(job.dataset, job.dataset_options))
    return folder.relative_to(root).as_posix()


def with_kits(url: str, root: str | Path, jobs: list[JobSpec]) -> list[JobSpec]:
    """The jobs, each pointed at its challenge's kit where it has one (written once per challenge)."""
    root = Path(root).expanduser().resolve()
    kits: dict[str, str | None] = {}
    out = []
    for job in jobs:
        if job.task not in KIT_TASKS:
            out.append(job)
            continue
        key = json.dumps([job.dataset, job.dataset_options], sort_keys=True, default=str)
        if key not in kits:
            try:
                kits[key] = _kit_for(url, root, job)
            except (KitError, LeaderboardError, DBAPIError, OSError, ImportError) as exc:
                # The runs themselves do not need a kit; their baselines then predict on the test split.
                log.error("no kit for %s %s: %s; its runs predict on the dataset's test split", job.dataset,
                          job.dataset_options, exc)
                kits[key] = None
        out.append(replace(job, kit=kits[key]) if kits[key] else job)
    return out
