"""`python -m leaderboard admin ...`: every command, through main(argv) and one real subprocess."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from db.engine import create_schema
from leaderboard.__main__ import main
from workers.datasets import held_test_labels

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"num_classes": 10, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 5}


@pytest.fixture
def db(sqlite_url: str) -> str:
    create_schema(sqlite_url)
    return sqlite_url


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv", [["--help"], ["admin", "--help"]])
def test_help_explains_every_command(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "leaderboard", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    expected = ["admin"] if argv == ["--help"] else [
        "create-challenge", "create-team", "revoke-token", "list-challenges", "list-teams", "list-submissions",
        "rescore", "submit"]
    for command in expected:
        assert command in done.stdout


def test_admin_commands_end_to_end(db: str, tmp_path: Path, capsys) -> None:
    options = [f"--option={key}={value}" for key, value in OPTIONS.items()]
    code, out, _ = run(capsys, "admin", "create-challenge", "--slug", "syn", "--dataset", "synthetic", *options,
                       "--quota", "1", "--window-days", "3", "--db", db)
    assert code == 0 and "challenge 'syn'" in out and "quota 1 per 3 days" in out

    code, out, _ = run(capsys, "admin", "create-team", "alpha", "--db", db)
    token = out.strip().splitlines()[-1]
    assert code == 0 and "shown only this once" in out and len(token) >= 43
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    code, out, _ = run(capsys, "admin", "create-team", "baselines", "--official", "--db", db)
    assert code == 0 and "official team" in out

    labels = held_test_labels("synthetic", OPTIONS)
    rng = np.random.default_rng(0)
    rows = [f"{i},{label}," + ",".join(str((label + d) % 10) for d in (1, 2, 3, 4)) if rng.random() < 0.6
            else f"{i}," + ",".join(str((label + d) % 10) for d in (1, 2, 3, 4, 5)) for i, label in labels.items()]
    file = tmp_path / "preds.csv"
    file.write_text("image_id,pred_1,pred_2,pred_3,pred_4,pred_5\n" + "\n".join(rows) + "\n")

    code, out, _ = run(capsys, "admin", "submit", "--token-file", str(token_file), "--challenge", "syn", str(file),
                       "--label", "resnet18", "--db", db)
    assert code == 0 and "top1_err" in out and "95% CI" in out and "submissions left in this window: 0" in out
    code, out, _ = run(capsys, "admin", "submit", "--token-file", str(token_file), "--challenge", "syn", str(file), "--db", db)
    assert code == 0 and out.startswith("already submitted as #1; not charged\n") and "top1_err" in out
    assert "submissions left in this window: 0" in out and "recorded" not in out
    other = tmp_path / "other.csv"
    other.write_text(file.read_text().replace("\n", "\r\n"))  # the same predictions, other bytes: another file
    code, _, err = run(capsys, "admin", "submit", "--token-file", str(token_file), "--challenge", "syn", str(other), "--db", db)
    assert code == 1 and "error: quota reached" in err

    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,pred_1\ntest_000000,42\n")
    code, _, err = run(capsys, "admin", "submit", "--token-file", str(token_file), "--challenge", "syn", str(bad), "--db", db)
    assert code == 1 and "error:" in err

    code, out, _ = run(capsys, "admin", "list-submissions", "--challenge", "syn", "--db", db)
    assert code == 0 and "resnet18" in out and "alpha" in out and "top5_err" in out
    code, out, _ = run(capsys, "admin", "rescore", "1", "--db", db)
    assert code == 0 and "submission 1: top5_err" in out
    code, out, _ = run(capsys, "admin", "list-challenges", "--db", db)
    assert code == 0 and "syn" in out and "1/3d" in out
    code, out, _ = run(capsys, "admin", "list-teams", "--db", db)
    assert code == 0 and "baselines" in out and token not in out

    code, out, _ = run(capsys, "admin", "revoke-token", "alpha", "--db", db)
    assert code == 0 and "revoked" in out
    code, _, err = run(capsys, "admin", "submit", "--token-file", str(token_file), "--challenge", "syn", str(file), "--db", db)
    assert code == 1 and err.strip() == "error: invalid or revoked token"


def test_token_from_the_environment_and_db_default(db: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CONVBENCH_DB", db)
    assert run(capsys, "admin", "create-challenge", "--slug", "syn", "--dataset", "synthetic",
               *[f"--option={k}={v}" for k, v in OPTIONS.items()])[0] == 0
    code, out, _ = run(capsys, "admin", "create-team", "alpha")
    monkeypatch.setenv("CONVBENCH_TOKEN", out.strip().splitlines()[-1])
    file = tmp_path / "p.csv"
    file.write_text("image_id,pred_1\n" + "\n".join(f"{i},{label}" for i, label in
                                                     held_test_labels("synthetic", OPTIONS).items()) + "\n")
    code, out, _ = run(capsys, "admin", "submit", "--challenge", "syn", str(file))
    assert code == 0 and "top1_err = 0.0000" in out and "submissions left in this window: 1" in out
    monkeypatch.delenv("CONVBENCH_TOKEN")
    code, _, err = run(capsys, "admin", "submit", "--challenge", "syn", str(file))
    assert code == 2 and "--token-file" in err
    monkeypatch.setenv("CONVBENCH_TOKEN", "t")
    code, _, err = run(capsys, "admin", "submit", "--challenge", "syn", str(tmp_path / "none.csv"))
    assert code == 2 and "cannot read" in err


def test_bad_options_are_refused(db: str, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["admin", "create-challenge", "--slug", "s", "--dataset", "synthetic", "--option", "novalue"])
    assert "expected key=value" in capsys.readouterr().err
    code, _, err = run(capsys, "admin", "create-challenge", "--slug", "s", "--dataset", "synthetic",
                       "--option", "num_classes=ten", "--db", db)
    assert code == 1 and err.startswith("error: dataset.num_classes: expected an integer")
