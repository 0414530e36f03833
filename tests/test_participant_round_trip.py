"""Issue #14, "How it is checked", second point: a challenge entered from outside, end to end.

The host renders a folder of real test images (scikit-learn's digit scans at 32 px, PNG and JPEG, the label in each
file's name and metadata as bait), writes an `image,label` CSV, creates the challenge with `convbench challenge
create --images --labels` and deletes both. The team gets the kit with `convbench challenge kit`, checks it with
`sha256sum -c`, trains a small network on the training data the kit's rules name, predicts top-5 on the kit's
images, writes predictions.csv in sample_submission.csv's format and sends it with `convbench submit --server`
(token in the environment) to the real gate on a free port. Its entry is on the board under its name, and the
score the CLI printed equals an independent top-k computation: the file against held_labels, read with plain SQL
(on the public part, which the board shows; the private part's score, kept apart until the close, likewise).
The host separately maps its own files to the kit's ids by the SHA-256 of each file stripped as the kit stores
it (kit_images.sha256), which checks that the labels were stored under the right ids.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from conftest import project_env
from gate_server import serving

from leaderboard.gate_client import SITE_KEY_ENV

ROOT = Path(__file__).resolve().parent.parent
SLUG = "digits-held"
TEAM = "outside team"
ENTRY = "my entry"
# The registry's `digits` at 32 px: the host's test images are scans of its test split, the team trains on its
# train split (disjoint scans of the same distribution), as the kit's rules say.
TRAIN_OPTIONS = {"image_size": 32}
TRAIN_DATA = "convbench dataset digits, options image_size=32: its train and val splits"
PER_CLASS = 12
BAIT = b"label="  # what the host's files carry in their metadata; no kit image may
SCORE = re.compile(r"(top[1-5]_err) = ([0-9.]+)  \(95% CI ([0-9.]+)-([0-9.]+)\)")


@pytest.fixture(scope="module")
def digits():
    from workers.datasets import held_test_labels, load_dataset

    return load_dataset("digits", TRAIN_OPTIONS), held_test_labels("digits", TRAIN_OPTIONS)


def cli(*args: str, token: str | None = None) -> str:
    """`convbench ARGS` in a fresh process, as a user types it; its stdout (a failure shows both streams)."""
    program = Path(sys.executable).parent / "convbench"
    env = project_env()
    env.pop(SITE_KEY_ENV, None)  # an outside team has no key shared with the gate
    env.pop("CONVBENCH_TOKEN", None)
    if token is not None:
        env["CONVBENCH_TOKEN"] = token
    proc = subprocess.run([str(program), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, f"convbench {args[0]}: {proc.stdout}{proc.stderr}"
    return proc.stdout


# --- the host ---------------------------------------------------------------------------------------

def render_test_folder(folder: Path, digits) -> dict[str, int]:
    """PER_CLASS test scans per digit as files named after their label, with the label in their metadata too (a PNG
    text chunk, a JPEG EXIF description): the kit must carry none of it. Returns file name -> digit."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    data, held = digits
    folder.mkdir()
    labels: dict[str, int] = {}
    counts = [0] * 10
    for i in range(len(data.test)):
        pixels, test_id = data.test[i]
        digit = held[test_id]
        if counts[digit] == PER_CLASS:
            continue
        counts[digit] += 1
        image = Image.fromarray(pixels.permute(1, 2, 0).numpy())
        note = BAIT + str(digit).encode()
        if counts[digit] % 2:
            name = f"digit{digit}_{counts[digit]:02d}.png"
            info = PngInfo()
            info.add_text("Comment", note.decode())
            image.save(folder / name, pnginfo=info)
        else:
            name = f"digit{digit}_{counts[digit]:02d}.jpg"
            exif = Image.Exif()
            exif[0x010E] = note.decode()  # ImageDescription
            image.save(folder / name, quality=95, exif=exif.tobytes())
        labels[name] = digit
    assert counts == [PER_CLASS] * 10
    return labels


def host_creates_the_challenge(tmp_path: Path, url: str, digits) -> tuple[dict[str, int], dict[str, bytes]]:
    """The challenge from a folder and a labels file, both deleted afterwards; what the host keeps in memory:
    its labels by file name and its files' bytes."""
    images, labels_csv = tmp_path / "host" / "test_images", tmp_path / "host" / "labels.csv"
    images.parent.mkdir()
    labels = render_test_folder(images, digits)
    with open(labels_csv, "w", newline="") as f:
        csv.writer(f).writerows([("image", "label"), *sorted(labels.items())])
    files = {name: (images / name).read_bytes() for name in labels}
    assert all(BAIT in data for data in files.values())  # the bait is there to be stripped

    out = cli("challenge", "create", "--slug", SLUG, "--images", str(images), "--labels", str(labels_csv),
              "--train-data", TRAIN_DATA, "--title", "Handwritten digits, held labels", "--db", url)
    assert f"challenge '{SLUG}'" in out and "classification on private" in out and "10 classes" in out, out
    shutil.rmtree(images)
    labels_csv.unlink()  # the labels now exist only in the database
    return labels, files


# --- the team ---------------------------------------------------------------------------------------

def small_cnn():
    """The team's model. A zoo ResNet-18 from scratch at 32 px stays at chance for the first 8 s of training on a
    busy 2-core machine; this network reaches ~90% top-1 on digits in the same time, which is what the round trip
    needs: predictions that are far from chance, so a wrong key or a shuffled label would show."""
    from torch import nn

    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(*block(3, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2), *block(32, 64),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def normalise(images):
    return (images.float() / 255 - 0.5) / 0.5


@pytest.fixture(scope="module")
def team_model(digits):
    """The team trains on the registry's digits train split for a fixed number of steps (seeded: the same model on
    every run), once for the module: the kit's rules, checked in the test, name that split as the training data."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a 2-core machine shared with other work, a second thread makes training 10x slower
    train = digits[0].train
    x = normalise(torch.stack([train[i][0] for i in range(len(train))]))
    y = torch.tensor([train[i][1] for i in range(len(train))])
    model = small_cnn()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(150):
        batch = torch.randint(len(x), (64,), generator=generator)
        loss = F.cross_entropy(model(x[batch]), y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    torch.set_num_threads(threads)
    return model.eval()


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def team_predicts(kit: Path, model) -> Path:
    """Top-5 class ids for every kit image, keyed by its file's stem, in sample_submission.csv's header and order."""
    import torch
    from PIL import Image

    sample = read_csv(kit / "sample_submission.csv")
    header, ids = sample[0], [row[0] for row in sample[1:]]
    by_stem = {path.stem: path for path in (kit / "images").iterdir()}
    assert sorted(by_stem) == sorted(ids)
    pixels = [np.asarray(Image.open(by_stem[image_id]).convert("RGB")) for image_id in ids]
    batch = normalise(torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2))
    with torch.no_grad():
        top = model(batch).topk(len(header) - 1, dim=1).indices.tolist()
    out = kit.parent / "predictions.csv"
    with open(out, "w", newline="") as f:
        csv.writer(f).writerows([header, *([image_id, *guesses] for image_id, guesses in zip(ids, top))])
    return out


def printed_scores(out: str) -> dict[str, tuple[float, float, float]]:
    return {m[1]: (float(m[2]), float(m[3]), float(m[4])) for m in SCORE.finditer(out)}


def held_labels_sql(url: str) -> tuple[dict[str, tuple[int, str]], dict[str, str], dict[int, dict]]:
    """What the database holds, read with plain SQL (not the scorer's code): the held labels with their part
    (leaderboard.parts: public, shown on the board; private, scored apart until the close), the kit's ids by their
    files' SHA-256, and each submission's private-part scores."""
    engine = sa.create_engine(url)
    mine = "JOIN challenges c ON c.id = {}.challenge_id WHERE c.slug = :slug"
    with engine.connect() as conn:
        held = conn.execute(sa.text(f"SELECT h.image_id, h.label, h.part FROM held_labels h {mine.format('h')}"),
                            {"slug": SLUG}).all()
        kit = conn.execute(sa.text(f"SELECT k.sha256, k.image_id FROM kit_images k {mine.format('k')}"),
                           {"slug": SLUG}).all()
        private = conn.execute(sa.text("SELECT submission_id, scores FROM private_scores")).all()
    engine.dispose()
    return ({str(i): (int(label), part or "public") for i, label, part in held}, {str(sha): str(i) for sha, i in kit},
            {int(i): json.loads(v) if isinstance(v, str) else v for i, v in private})


def top_k_errors(guesses: dict[str, list[int]], labels: dict[str, int]) -> dict[str, float]:
    """Top-1..top-5 error of `guesses` on the images of `labels`, computed here from the two files' contents."""
    return {f"top{k}_err": float(np.mean([labels[i] not in guesses[i][:k] for i in labels])) for k in range(1, 6)}


def board_page_entries(url: str, monkeypatch) -> tuple[list[str], list[str]]:
    """The Leaderboard page (its first challenge, each team's best) as a visitor sees it: entries and warnings."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CONVBENCH_DB", url)
    app = AppTest.from_file(str(ROOT / "leaderboard" / "app.py"), default_timeout=60).run()
    assert not app.exception, app.exception
    return list(app.dataframe[0].value["entry"]), [w.value for w in app.warning]


def test_an_outside_team_enters_a_challenge_made_from_private_files(db_url, tmp_path, digits, team_model,
                                                                     monkeypatch) -> None:
    from leaderboard import gate_client
    from leaderboard.kit_images import clean_image
    from leaderboard.queries import leaderboard

    host_labels, host_files = host_creates_the_challenge(tmp_path, db_url, digits)
    token = cli("team", "create", TEAM, "--db", db_url).strip().splitlines()[-1]

    # --- the team: the kit, checked, and what it says ---
    team = tmp_path / "team"
    team.mkdir()
    kit = team / "kit"
    out = cli("challenge", "kit", SLUG, str(kit), "--db", db_url)
    assert f"{len(host_labels)} images" in out, out
    check = subprocess.run(["sha256sum", "-c", "MANIFEST.sha256"], cwd=kit, capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    listed = {line.rsplit(": ", 1)[0] for line in check.stdout.splitlines() if line.endswith(": OK")}
    on_disk = {p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file()} - {"MANIFEST.sha256"}
    assert listed == on_disk  # every file of the kit is checked, and nothing the manifest names is missing

    rules = json.loads((kit / "rules.json").read_text())
    assert (rules["challenge"], rules["task"], rules["metric"], rules["test_images"], rules["classes"]) == (
        SLUG, "classification", "top5_err", len(host_labels), 10)
    assert rules["quota"]["submissions"] == 2 and rules["open_book"] is False
    assert rules["training_data"] == TRAIN_DATA  # what the team trains on: the fixture's split
    classes = read_csv(kit / "classes.csv")
    assert classes[0] == ["id", "name", "wnid"]
    assert [(int(i), name) for i, name, _ in classes[1:]] == list(enumerate(digits[0].class_names))

    images = sorted((kit / "images").iterdir())
    assert len(images) == len(host_labels) and {p.suffix for p in images} == {".png", ".jpg"}
    assert not {p.stem for p in images} & {Path(name).stem for name in host_labels}  # no host name survives
    assert not [p.name for p in images if BAIT in p.read_bytes()]  # nor the labels in the files' metadata

    # --- the team predicts and submits over HTTP ---
    predictions = team_predicts(kit, team_model)
    with serving(db_url) as gate:
        out = cli("submit", "--server", gate, "--challenge", SLUG, str(predictions), "--name", ENTRY, token=token)
        again = cli("submit", "--server", gate, "--challenge", SLUG, str(predictions), "--name", ENTRY, token=token)
        left = gate_client.quota(gate, token, SLUG)
    printed = printed_scores(out)
    assert set(printed) == {f"top{k}_err" for k in range(1, 6)}, out
    assert "rank: 1 of 1 on the board" in out, out
    assert re.search(r"submission \d+ recorded; submissions left in this window: 1$", out.strip()), out
    assert again.startswith("already submitted as #") and "submissions left in this window: 1" in again, again
    assert (left["used"], left["left"]) == (1, 1)

    # --- the score against an independent top-k computation on the same files ---
    held, kit_ids_by_sha, private_scores = held_labels_sql(db_url)
    guesses = {row[0]: [int(g) for g in row[1:]] for row in read_csv(predictions)[1:]}
    assert set(guesses) == set(held) and len(held) == len(host_labels)
    parts = {part: {i: label for i, (label, p) in held.items() if p == part} for part in ("public", "private")}
    assert parts["public"] and parts["private"], "the default challenge has a public and a private part"
    public = top_k_errors(guesses, parts["public"])  # what the gate answers and the board shows
    for metric, (value, low, high) in printed.items():
        assert value == pytest.approx(public[metric], abs=5e-5), metric  # printed to 4 decimals
        assert low <= value <= high and (low < high or value in (0.0, 1.0)), metric  # every resample alike at 0
    submission_id = int(re.search(r"submission (\d+) recorded", out)[1])
    private = top_k_errors(guesses, parts["private"])
    assert {m: private_scores[submission_id][m] for m in private} == pytest.approx(private)
    # Far from chance (90% / 50%): the model learned the digits, so a label stored under the wrong id would show.
    overall = top_k_errors(guesses, {i: label for i, (label, _) in held.items()})
    assert overall["top1_err"] < 0.4 and overall["top5_err"] < 0.15, overall

    # The host's own check: its files, stripped as the kit stores them, map to the kit's ids by SHA-256, and the
    # labels held under those ids are the labels of its (deleted) labels file.
    mapped = {kit_ids_by_sha[hashlib.sha256(clean_image(data, name).data).hexdigest()]: host_labels[name]
              for name, data in host_files.items()}
    assert mapped == {i: label for i, (label, _) in held.items()}

    # --- the entry on the board, under its name ---
    board = leaderboard(db_url, SLUG)
    assert list(board["entry"]) == [ENTRY] and list(board["team"]) == [TEAM] and list(board["rank"]) == [1]
    assert board["top5_err"][0] == pytest.approx(public["top5_err"])
    assert board["top1_err"][0] == pytest.approx(public["top1_err"])
    entries, warnings = board_page_entries(db_url, monkeypatch)
    assert entries == [ENTRY]
    assert not [w for w in warnings if "Open book" in w]  # private labels: not marked open-book


def test_the_kit_decodes_to_the_host_files_pixels_for_the_team_and_for_the_workers(tmp_path, digits) -> None:
    """What the team predicts on is what the host rendered: each kit image decodes to its source file's pixels (PNG
    and JPEG kept bit for bit, only metadata dropped), with Pillow as a team reads it and through
    workers.datasets.kit as a baseline run reads it, so both are scored on the host's own images."""
    from PIL import Image

    from leaderboard.kit_images import clean_image
    from workers.datasets.kit import kit_test_split

    url = f"sqlite:///{tmp_path / 'c.db'}"
    _, host_files = host_creates_the_challenge(tmp_path, url, digits)
    kit = tmp_path / "kit"
    cli("challenge", "kit", SLUG, str(kit), "--db", url)
    _, kit_ids_by_sha, _ = held_labels_sql(url)
    split, read = kit_test_split(kit, digits[0].class_names)  # checks every image against the manifest
    worker = {split[i][1]: split[i][0].permute(1, 2, 0).numpy() for i in range(len(split))}
    assert len(worker) == len(host_files) and read.image_ids == [r[0] for r in read_csv(kit / "sample_submission.csv")[1:]]

    def decoded(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    files = {p.stem: p for p in (kit / "images").iterdir()}
    for name, data in host_files.items():
        image_id = kit_ids_by_sha[hashlib.sha256(clean_image(data, name).data).hexdigest()]
        source = decoded(data)
        assert np.array_equal(decoded(files[image_id].read_bytes()), source), name
        # Pillow's and torchvision's decoders agree, or a baseline would predict on other pixels than the teams.
        assert np.array_equal(worker[image_id], source), name
