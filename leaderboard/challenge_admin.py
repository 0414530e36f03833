"""The host's challenge commands beyond `create --dataset`: from private files, the kit, closing.

`convbench challenge create` takes one of three sources (a registry dataset's test split; a folder of images
with a labels file; ImageNet's held-out val), `convbench challenge kit SLUG OUT/` writes the participant kit,
`convbench challenge close SLUG` ends submissions. leaderboard.admin registers them; this module holds their
work so that building the parsers imports nothing.
"""
from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from leaderboard.errors import ChallengeError


def create(args: argparse.Namespace):
    """The challenge the arguments describe, created; ChallengeError for a mix that names no one source."""
    from leaderboard import private_labels
    from leaderboard.challenges import create_challenge, create_private_challenge, normalised_config

    rule = {"title": args.title, "quota": args.quota, "window_days": args.window_days,
            "public_fraction": args.public_fraction, "final_count": args.final_count, "ladder_threshold": args.ladder}
    if args.images or args.labels:
        if not (args.images and args.labels):
            raise ChallengeError("--images and --labels go together: a folder of test images and its labels file")
        # With --dataset: the registry dataset the benchmark's runs train on, so that they find this challenge and
        # predict on its kit (orchestrator.kits), with its class list, so that their class ids mean the same.
        tie = {"dataset": args.dataset, "dataset_options": dict(args.option)} if args.dataset else {}
        images, labels = Path(args.images), Path(args.labels)
        if not images.is_dir():
            raise ChallengeError(f"--images {images}: not a folder")
        if not labels.exists():
            raise ChallengeError(f"--labels {labels}: does not exist")
        classes = Path(args.classes) if args.classes else None
        # A CSV labels classes; a VOC Annotations folder or a COCO JSON labels boxes.
        if labels.is_dir() or labels.suffix.lower() == ".json":
            source = private_labels.detection(images, labels, classes)
        else:
            known = None
            if tie and classes is None:
                from workers.datasets import dataset_class_names

                known = dataset_class_names(args.dataset, normalised_config(args.dataset, tie["dataset_options"]))
            source = private_labels.classification(images, labels, classes, known)
        return create_private_challenge(args.db, args.slug, source, train_data=args.train_data, **tie, **rule)
    if not args.dataset:
        raise ChallengeError("give --dataset NAME, or --images DIR with --labels FILE")
    if args.val_per_class:
        if args.dataset != "imagenet":
            raise ChallengeError(f"--val-per-class holds out ImageNet's val images; dataset {args.dataset!r} has none")
        options = dict(args.option)
        source = private_labels.imagenet_val(options, args.val_per_class)
        return create_private_challenge(args.db, args.slug, source, dataset="imagenet", dataset_options=options,
                                        **rule)
    return create_challenge(args.db, args.slug, args.dataset, dict(args.option), **rule)


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", default=None, metavar="DIR",
                   help="a folder of test images (with --labels): labels stored once, the folder may then be deleted")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="the labels of --images: an image,label CSV (classification), a VOC Annotations folder or "
                        "a COCO JSON (detection)")
    p.add_argument("--classes", default=None, metavar="FILE",
                   help="the class list id,name[,wnid] (default: the labels' values, sorted)")
    p.add_argument("--train-data", default="", metavar="TEXT",
                   help="where teams get training and validation data (a dataset name, a path); named in the kit")
    p.add_argument("--public-fraction", type=float, default=0.5, metavar="F",
                   help="the share of test images scored on the board while the challenge is open (default 0.5); "
                        "the rest is the private part, shown at the close. 1: no private part")
    p.add_argument("--final-count", type=int, default=2, metavar="N",
                   help="how many submissions a team may mark as final for the private ranking (default 2)")
    p.add_argument("--ladder", type=float, default=None, metavar="THRESHOLD",
                   help="show the Ladder's public scores (Blum and Hardt 2015): a team's shown score moves only when "
                        "an upload beats its shown best by more than THRESHOLD (a fraction of the error, e.g. 0.01), "
                        "so probing the public part tells it little (default: a plain board)")
    p.add_argument("--val-per-class", type=int, default=0, metavar="N",
                   help="with --dataset imagenet: hold out N val images per class, labelled by the devkit's ground "
                        "truth or LOC_val_solution.csv")


def cmd_kit(args: argparse.Namespace) -> int:
    from db.engine import session_scope
    from leaderboard.kit import write_kit

    with session_scope(args.db) as session:
        out = write_kit(session, args.slug, args.out)
        count = len(list((out / "images").iterdir()))
    print(f"kit of {args.slug!r} written to {out}: {count} images; check it with "
          f"`cd {out} && sha256sum -c MANIFEST.sha256`")
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    from leaderboard.challenges import close_challenge

    challenge = close_challenge(args.db, args.slug)
    print(f"challenge {challenge.slug!r} closed at {challenge.closed_at:%Y-%m-%d %H:%M:%S} UTC: "
          f"no more submissions")
    return 0


def build_kit(p: argparse.ArgumentParser) -> None:
    p.add_argument("slug", help="the challenge's slug")
    p.add_argument("out", help="a new (or empty) folder to write the kit into")
    p.set_defaults(func=cmd_kit)


def build_close(p: argparse.ArgumentParser) -> None:
    p.add_argument("slug", help="the challenge's slug")
    p.set_defaults(func=cmd_close)


def _when(text: str) -> datetime:
    """An ISO time (`2027-01-31`, `2027-01-31T12:00`, `...+02:00`); without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r} (e.g. 2027-01-31T12:00, UTC)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_phase_add(args: argparse.Namespace) -> int:
    from db.engine import session_scope
    from leaderboard.challenges import get_challenge
    from leaderboard.phases import add_phase

    with session_scope(args.db) as session:
        challenge = get_challenge(session, args.slug)
        phase = add_phase(session, challenge, args.name, args.start, args.end, args.quota, args.window_days,
                          args.per_day, args.total, args.visibility, actor="admin")
        end = f"{phase.ends_at:%Y-%m-%d %H:%M:%S} UTC" if phase.ends_at else "the close"
        print(f"phase {phase.name!r} of {args.slug!r}: {phase.starts_at:%Y-%m-%d %H:%M:%S} UTC to {end}; "
              f"{phase.quota} per {phase.window_days:g} days"
              + (f", {phase.per_day} per UTC day" if phase.per_day else "")
              + (f", {phase.total} in total" if phase.total else "") + f"; scores {phase.visibility}")
    return 0


def cmd_phase_list(args: argparse.Namespace) -> int:
    from db.engine import session_scope
    from leaderboard.challenges import get_challenge
    from leaderboard.phases import rules

    with session_scope(args.db) as session:
        for rule in rules(session, get_challenge(session, args.slug)):
            print(f"{rule.name}: {rule.times()}; {rule.quota} per {rule.window_days:g} days"
                  + (f", {rule.per_day} per UTC day" if rule.per_day else "")
                  + (f", {rule.total} in total" if rule.total else "") + f"; scores {rule.visibility}")
    return 0


def build_phase(p: argparse.ArgumentParser) -> None:
    commands = p.add_subparsers(dest="phase_command", required=True, metavar="COMMAND")
    add = commands.add_parser("add", help="add a phase with its times and quota rules",
                              description="Add a phase: submissions are taken only inside a phase, under its rules "
                                          "(per rolling window, per UTC day, in total), counted in one locked "
                                          "transaction. Phases may not overlap. Times are ISO, UTC unless zoned.",
                              epilog="example:\n  %(prog)s syn --name final --start 2027-01-01 --end 2027-01-08 "
                                     "--quota 2 --per-day 1 --total 3")
    add.add_argument("slug", help="the challenge's slug")
    add.add_argument("--name", required=True, help="the phase's name, e.g. development, final")
    add.add_argument("--start", required=True, type=_when, help="when it opens (ISO time, UTC)")
    add.add_argument("--end", type=_when, default=None, help="when it ends (ISO time, UTC; default: at the close)")
    add.add_argument("--quota", type=int, required=True, help="submissions per team per rolling window")
    add.add_argument("--window-days", type=float, default=7.0, help="the rolling window in days (default 7)")
    add.add_argument("--per-day", type=int, default=None, help="submissions per team per UTC day (default: no cap)")
    add.add_argument("--total", type=int, default=None, help="submissions per team in the phase (default: no cap)")
    add.add_argument("--visibility", choices=("public", "hidden"), default="public",
                     help="public: scores shown while it runs; hidden: withheld until it ends (open-ended: the close)")
    add.set_defaults(func=cmd_phase_add)
    show = commands.add_parser("list", help="the challenge's phases",
                               description="List a challenge's phases with their times and rules.",
                               epilog="example:\n  %(prog)s syn")
    show.add_argument("slug", help="the challenge's slug")
    show.set_defaults(func=cmd_phase_list)


def select_final(args: argparse.Namespace, token: str) -> int:
    """`convbench submit --challenge SLUG --select-final ID...`: through the gate (--server) or the database."""
    if args.server:
        from leaderboard import gate_client

        answer = gate_client.select_final(args.server, token, args.challenge, args.select_final)
    else:
        from leaderboard.admin import cli_client
        from leaderboard.final import select_final as select

        chosen = select(args.db, token, args.challenge, args.select_final, throttle_key=cli_client())
        answer = {"submission_ids": chosen.submission_ids, "final_count": chosen.final_count,
                  "deadline": chosen.deadline.isoformat() if chosen.deadline else None}
    ids = ", ".join(f"#{i}" for i in answer["submission_ids"]) or "none: the best public ones will count"
    deadline = str(answer.get("deadline") or "the close").replace("T", " ")[:19]
    print(f"finals of {args.challenge!r}: {ids} (at most {answer['final_count']}; changeable until {deadline})")
    return 0
