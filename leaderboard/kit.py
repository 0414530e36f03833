"""The participant kit of a challenge: its test images and everything needed to submit, never a label.

Layout (workers.datasets.kit reads it; orchestrator.kits hands it to the baselines):

    images/<image_id>.<ext>   every test image, as stored at creation: opaque id, metadata stripped
    sample_submission.csv     a well-formed submission in kit order (classification: image_id,pred_1..pred_k
                              with k = min(5, classes); detection: the detection CSV, one row per image)
    classes.csv               id,name,wnid (wnid empty where the classes have none)
    rules.json, README.txt    metric, quota, window, dates, task, open-book or not, where training data come from,
                              the public part's fraction (never which image is in which part)
    MANIFEST.sha256           `sha256sum` lines for every other file: `sha256sum -c MANIFEST.sha256` checks it

Every file but the images is a function of the challenge's row and the images' ids, so the manifest, and its
SHA-256 (Challenge.kit_sha256), are the same every time the kit is written, until the rules change (a close).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from db.schema import Challenge, KitImage
from leaderboard.challenges import get_challenge
from leaderboard.errors import ChallengeError
from workers.metric_registry import task_metrics
from workers.prediction_format import DETECTION_CSV_HEADER, MAX_GUESSES, classification_header

IMAGES = "images"
SAMPLE_SUBMISSION = "sample_submission.csv"
CLASSES = "classes.csv"
RULES = "rules.json"
README = "README.txt"
MANIFEST = "MANIFEST.sha256"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # every entry's time: the archive tells nothing of when the kit was made

OPEN_BOOK_NOTE = ("Open-book: this challenge's test labels can be rebuilt from public code or data (a generated or "
                  "shipped dataset, or a test split carved out of the training folders). Its scores show that a method runs and how it compares, not how it does on "
                  "labels nobody has seen.")
HELD_NOTE = ("Held-out labels: the test labels exist only on the challenge server; nothing in this kit (file names, "
             "order, image metadata) carries them.")


def _rows(session: Session, challenge: Challenge) -> list[tuple[str, str, str]]:
    """(image_id, filename, sha256) in kit order, without the images' bytes."""
    query = (select(KitImage.image_id, KitImage.filename, KitImage.sha256)
             .where(KitImage.challenge_id == challenge.id).order_by(KitImage.position))
    return [(r[0], r[1], r[2]) for r in session.execute(query)]


def _csv(header: tuple[str, ...], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def sample_submission(challenge: Challenge, ids: list[str]) -> bytes:
    if challenge.task == "detection":
        return _csv(DETECTION_CSV_HEADER, [[image_id, 1, 0.5, 0, 0, 1, 1] for image_id in ids])
    k = min(MAX_GUESSES, max(len(challenge.class_names), 1))
    return _csv(classification_header(k), [[image_id, *range(k)] for image_id in ids])


def classes_csv(challenge: Challenge) -> bytes:
    wnids = list((challenge.dataset_config or {}).get("wnids") or [])
    names = list(challenge.class_names)
    wnids += [""] * (len(names) - len(wnids))
    return _csv(("id", "name", "wnid"), [[i, name, wnid] for i, (name, wnid) in enumerate(zip(names, wnids))])


def training_data(challenge: Challenge) -> str:
    """Where teams get training and validation data, in words: a registry dataset and its options, or what the
    host named for a challenge made from private files. Never the test images' own folder."""
    config = dict(challenge.dataset_config or {})
    if challenge.dataset == "private":
        return str(config.get("train_data") or "not named by the host: ask the organisers")
    config.pop("wnids", None)
    options = ", ".join(f"{k}={v}" for k, v in sorted(config.items()))
    return f"dataset {challenge.dataset!r} of convbench ({options}); its train and val splits"


def _when(value: Any) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:  # PostgreSQL answers in the session's time zone; SQLite stores UTC, naive
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parts_rule(challenge: Challenge) -> dict[str, Any] | None:
    """What the scores cover (issue #15): the public fraction and that the final ranking uses the private part at
    the close. From the challenge's row alone, never the held labels: the kit is the same whichever image is in
    which part. None without a private part (as kits were before the split)."""
    fraction = float(challenge.public_fraction if challenge.public_fraction is not None else 1.0)
    if fraction >= 1.0:
        return None
    return {"public_fraction": fraction,
            "while_open": (f"scores on the board and in every answer cover the public part of the test set, about "
                           f"{fraction:.0%} of its images"),
            "final_ranking": ("at the close, the official ranking scores each team's final selections on the "
                              "private part, the other images; which image is in which part is not told"),
            "final_selections": int(challenge.final_count)}


def ladder_rule(challenge: Challenge) -> dict[str, Any] | None:
    """The Ladder's rule (leaderboard.ladder) as the kit states it; None on a plain board."""
    threshold = challenge.ladder_threshold
    if threshold is None:
        return None
    return {"threshold": threshold,
            "means": (f"the Ladder (Blum and Hardt 2015): the public score shown for each submission, and the team's "
                      f"on the board, changes only when a submission beats the team's shown best by more than "
                      f"{threshold:g} (a fraction of the error), and is then rounded to a multiple of it; so probing "
                      f"the public part with small changes tells nothing, and the board stays an honest estimate")}


def rules(challenge: Challenge, n_images: int) -> dict[str, Any]:
    metrics = [m.name for m in task_metrics(challenge.task)]
    scoring_parts = parts_rule(challenge)
    ladder = ladder_rule(challenge)
    return {**({"test_parts": scoring_parts} if scoring_parts is not None else {}),
        **({"ladder": ladder} if ladder is not None else {}),
        "challenge": challenge.slug, "title": challenge.title, "task": challenge.task,
        "metric": challenge.metric, "metrics_reported": metrics, "lower_is_better_on_board": True,
        "quota": {"submissions": challenge.quota, "per_rolling_days": challenge.window_days},
        "created_at": _when(challenge.created_at), "closed_at": _when(challenge.closed_at),
        "open_book": bool(challenge.open_book), "open_book_means": OPEN_BOOK_NOTE if challenge.open_book else HELD_NOTE,
        "test_images": n_images, "classes": len(challenge.class_names),
        "training_data": training_data(challenge),
        "submission": ("image_id,pred_1,...,pred_k (1 <= k <= 5 class ids, best first), one row per test image"
                       if challenge.task == "classification" else
                       "image_id,class_id,score,x1,y1,x2,y2 (class ids 1..C, pixels), or COCO results JSON"),
    }


def readme(challenge: Challenge, rule: dict[str, Any]) -> bytes:
    closed = f"closed on {rule['closed_at']}: no submission is taken" if rule["closed_at"] else "open"
    lines = [
        f"convbench challenge {challenge.slug}: {challenge.title}",
        "",
        f"Task: {challenge.task}. Ranked by {challenge.metric}. The challenge is {closed}.",
        (f"Quota: at most {challenge.quota} scored submissions per team per {challenge.window_days:g} days "
         "(a rejected file, or a file your team already sent, costs nothing)."),
        "",
        rule["open_book_means"],
        "",
        (f"Test images: {rule['test_images']} files in images/, named <image_id>.<ext>; no id carries a label and "
         "the order is shuffled."),
        f"Classes: classes.csv (id,name,wnid); predict the ids. {len(challenge.class_names)} classes.",
        f"Submission: {rule['submission']}. sample_submission.csv is a well-formed example in kit order.",
        f"Training and validation data: {rule['training_data']}. They are not in this kit.",
        *_parts_lines(rule.get("test_parts")),
        *(["", f"Shown scores: {rule['ladder']['means']}."] if rule.get("ladder") else []),
        "",
        "Check the kit: sha256sum -c MANIFEST.sha256",
        "Rules in machine-readable form: rules.json",
    ]
    return ("\n".join(lines) + "\n").encode()


def _parts_lines(parts: dict[str, Any] | None) -> list[str]:
    if parts is None:
        return []
    return ["", (f"Public and private parts: while the challenge is open, {parts['while_open']}. The rest is the "
                f"private part: {parts['final_ranking']}. Each team marks up to {parts['final_selections']} "
                "submissions as final (`convbench submit --select-final ID...`); a team that marks none is ranked "
                "by its best public ones.")]


def text_files(session: Session, challenge: Challenge) -> tuple[list[tuple[str, str, str]], dict[str, bytes]]:
    """The kit's image rows and its files other than the images and the manifest, by relative path."""
    rows = _rows(session, challenge)
    if not rows:
        raise ChallengeError(f"challenge {challenge.slug!r} has no kit: it was created before kits existed; "
                             f"create it again to give it one")
    rule = rules(challenge, len(rows))
    files = {
        SAMPLE_SUBMISSION: sample_submission(challenge, [image_id for image_id, _, _ in rows]),
        CLASSES: classes_csv(challenge),
        RULES: (json.dumps(rule, indent=2, sort_keys=True) + "\n").encode(),
        README: readme(challenge, rule),
    }
    return rows, files


def manifest(rows: list[tuple[str, str, str]], files: dict[str, bytes]) -> bytes:
    digests = {f"{IMAGES}/{filename}": sha for _, filename, sha in rows}
    digests |= {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests)).encode()


def manifest_sha256(session: Session, challenge: Challenge) -> str:
    """The SHA-256 of the kit's MANIFEST.sha256 as write_kit would write it now (Challenge.kit_sha256)."""
    return hashlib.sha256(manifest(*text_files(session, challenge))).hexdigest()


def _images(session: Session, challenge: Challenge) -> Iterator[tuple[str, bytes]]:
    query = (select(KitImage).options(undefer(KitImage.data)).where(KitImage.challenge_id == challenge.id)
             .order_by(KitImage.position).execution_options(yield_per=256))
    for image in session.scalars(query):
        yield image.filename, image.data


def write_kit(session: Session, slug: str, out_dir: str | Path) -> Path:
    """Write the challenge's kit into `out_dir` (created; must be empty if it exists); returns the folder."""
    challenge = get_challenge(session, slug)
    rows, files = text_files(session, challenge)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ChallengeError(f"{out}: exists and is not an empty folder; give a new one")
    (out / IMAGES).mkdir(parents=True, exist_ok=True)
    for filename, data in _images(session, challenge):
        (out / IMAGES / filename).write_bytes(data)
    for name, data in files.items():
        (out / name).write_bytes(data)
    (out / MANIFEST).write_bytes(manifest(rows, files))
    return out


def kit_zip_bytes(session: Session, slug: str) -> bytes:
    """The kit as a zip archive, its files under the folder `<slug>/`: what the Data page offers."""
    challenge = get_challenge(session, slug)
    rows, files = text_files(session, challenge)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        def add(name: str, data: bytes, method: int) -> None:
            info = zipfile.ZipInfo(f"{slug}/{name}", date_time=ZIP_TIME)
            info.compress_type = method
            archive.writestr(info, data)

        for name, data in files.items():
            add(name, data, zipfile.ZIP_DEFLATED)
        add(MANIFEST, manifest(rows, files), zipfile.ZIP_DEFLATED)
        for filename, data in _images(session, challenge):
            add(f"{IMAGES}/{filename}", data, zipfile.ZIP_STORED)  # JPEG and PNG are compressed already
    return buffer.getvalue()


def kit_summary(session: Session, slug: str) -> dict[str, Any]:
    """What the Data page shows without building the archive: image count, bytes, rules, a preview."""
    from sqlalchemy import func

    challenge = get_challenge(session, slug)
    rows, files = text_files(session, challenge)
    size = session.scalar(select(func.sum(func.length(KitImage.data))).where(KitImage.challenge_id == challenge.id))
    return {"images": len(rows), "image_bytes": int(size or 0), "rules": json.loads(files[RULES]),
            "sample_submission": files[SAMPLE_SUBMISSION].decode().splitlines()[:6],
            "readme": files[README].decode(), "manifest_sha256": hashlib.sha256(manifest(rows, files)).hexdigest()}
