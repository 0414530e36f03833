"""The host's challenge commands beyond `create --dataset`: from private files, the kit, closing.

`convbench challenge create` takes one of three sources (a registry dataset's test split; a folder of images
with a labels file; ImageNet's held-out val), `convbench challenge kit SLUG OUT/` writes the participant kit,
`convbench challenge close SLUG` ends submissions. leaderboard.admin registers them; this module holds their
work so that building the parsers imports nothing.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from leaderboard.errors import ChallengeError


def create(args: argparse.Namespace):
    """The challenge the arguments describe, created; ChallengeError for a mix that names no one source."""
    from leaderboard import private_labels
    from leaderboard.challenges import create_challenge, create_private_challenge

    rule = {"title": args.title, "quota": args.quota, "window_days": args.window_days}
    if args.images or args.labels:
        if not (args.images and args.labels):
            raise ChallengeError("--images and --labels go together: a folder of test images and its labels file")
        if args.dataset:
            raise ChallengeError("give either --dataset or --images/--labels, not both")
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
            source = private_labels.classification(images, labels, classes)
        return create_private_challenge(args.db, args.slug, source, train_data=args.train_data, **rule)
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
