"""The submission gate served for real (uvicorn on 127.0.0.1, a free port) on SQLite and PostgreSQL: the quota
under 20 concurrent uploads, `convbench submit --server` end to end, the body cap before the body is read, the
throttles, and the OpenAPI schema."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from gate_server import serving

from db.engine import create_schema, session_scope
from db.schema import HeldLabel, Submission
from leaderboard import gate_client
from leaderboard.challenges import create_challenge
from leaderboard.errors import AuthError, ChallengeError, LeaderboardError, QuotaExceeded, Throttled, ValidationError
from leaderboard.tokens import create_team

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"num_classes": 10, "image_size": 8, "train_per_class": 1, "val_per_class": 1, "test_per_class": 4}


def challenge_and_team(url: str) -> tuple[dict[str, int], str, str]:
    """A synthetic challenge (quota 2) with its held labels, and two teams; returns (labels, token, other token)."""
    create_schema(url)
    create_challenge(url, "syn", "synthetic", OPTIONS, quota=2)
    with session_scope(url) as session:
        tokens = create_team(session, "alpha"), create_team(session, "beta")
        labels = dict(session.execute(sa.select(HeldLabel.image_id, HeldLabel.label)).all())
    return {k: int(v) for k, v in sorted(labels.items())}, *tokens


def predictions(labels: dict[str, int], seed: int) -> bytes:
    """A top-5 file, right first on about half the images; each seed a different file."""
    rng = np.random.default_rng(seed)
    rows = ["image_id,pred_1,pred_2,pred_3,pred_4,pred_5"]
    for image_id, label in labels.items():
        guesses = [c for c in rng.permutation(OPTIONS["num_classes"]).tolist() if c != label][:5]
        if rng.random() < 0.5:
            guesses = [label] + guesses[:4]
        rows.append(f"{image_id}," + ",".join(map(str, guesses)))
    return ("\n".join(rows) + "\n").encode()


def get(base: str, path: str, token: str | None = None) -> tuple[int, dict, Any]:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read()), reply.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


def test_twenty_concurrent_uploads_score_exactly_the_quota(db_url: str) -> None:
    labels, token, _ = challenge_and_team(db_url)
    files = [predictions(labels, seed) for seed in range(20)]
    with serving(db_url) as base:
        def send(data: bytes) -> dict | LeaderboardError:
            try:
                return gate_client.submit(base, token, "syn", data, "p.csv", name="crowd")
            except LeaderboardError as exc:
                return exc

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(send, files))
        scored = [a for a in answers if isinstance(a, dict)]
        refused = [a for a in answers if not isinstance(a, dict)]
        assert len(scored) == 2 and len(refused) == 18
        # Refused with a reason (the quota, or a throttle that counted the crowd), each a 429 kind.
        assert all(isinstance(e, (QuotaExceeded, Throttled)) and str(e) for e in refused)
        assert any(str(e).startswith("quota reached: 2 of 2 submissions to 'syn'") for e in refused)
        assert sorted(a["quota_left"] for a in scored) == [0, 1]
        status, body, _ = get(base, "/v1/challenges/syn/quota", token)
        assert status == 200 and body["used"] == 2 and body["left"] == 0 and body["next_slot_at"]
    with session_scope(db_url) as session:
        assert session.scalar(sa.select(sa.func.count(Submission.id))) == 2


def test_a_submission_answers_scores_rank_and_quota_and_only_to_its_team(db_url: str) -> None:
    labels, token, other = challenge_and_team(db_url)
    with serving(db_url) as base:
        first = gate_client.submit(base, token, "syn", predictions(labels, 1), "p.csv", name="first",
                                   description="a test", code_url="https://example.org/code")
        assert first["metric"] == "top5_err" and first["name"] == "first" and not first["existing"]
        low, high = first["ci"]
        assert low <= first["value"] <= high and first["scores"]["top5_err_ci"] == [low, high]
        assert first["rank"] == 1 and first["on_board"] and first["board_size"] == 1 and first["quota_left"] == 1
        perfect = "image_id,pred_1\n" + "".join(f"{i},{v}\n" for i, v in labels.items())
        best = gate_client.submit(base, other, "syn", perfect.encode(), "p.csv", name="oracle")
        assert best["value"] == 0.0 and best["rank"] == 1 and best["board_size"] == 2
        again = gate_client.submit(base, token, "syn", predictions(labels, 1), "p.csv")  # the same file: free
        assert again["existing"] and again["submission_id"] == first["submission_id"] and again["quota_left"] == 1
        assert again["rank"] == 2
        assert gate_client.submission(base, token, first["submission_id"])["name"] == "first"
        with pytest.raises(ChallengeError, match=f"no submission {first['submission_id']} of team 'beta'"):
            gate_client.submission(base, other, first["submission_id"])
        assert gate_client.me(base, other) == {"team": "beta", "official": False}
        assert [c["slug"] for c in gate_client.challenges(base)] == ["syn"]
        with pytest.raises(ChallengeError, match="no challenge 'nope'"):
            gate_client.quota(base, token, "nope")
        with pytest.raises(ValidationError, match="missing") as bad:
            gate_client.submit(base, token, "syn", b"image_id,pred_1\ntest_000000,3\n", "p.csv")
        assert bad.value.errors == [str(bad.value)]


def test_cli_submits_through_the_gate(sqlite_url: str, tmp_path: Path) -> None:
    labels, token, _ = challenge_and_team(sqlite_url)
    upload = tmp_path / "predictions.csv"
    upload.write_bytes(predictions(labels, 3))
    env = {**os.environ, "CONVBENCH_TOKEN": token}
    env.pop("CONVBENCH_DB", None)
    with serving(sqlite_url) as base:
        done = subprocess.run([sys.executable, "-m", "convbench", "submit", "--server", base, "--challenge", "syn",
                               str(upload), "--name", "cli entry"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        with session_scope(sqlite_url) as session:
            row = session.scalar(sa.select(Submission))
        assert row.label == "cli entry"
        out = done.stdout
        assert f"top5_err = {row.primary_score:.4f}  (95% CI " in out
        assert "rank: 1 of 1 on the board" in out
        assert f"submission {row.id} recorded; submissions left in this window: 1" in out
        # The token from a file works too; from argv it is refused before anything is sent.
        (tmp_path / "token").write_text(token + "\n")
        env.pop("CONVBENCH_TOKEN")
        again = subprocess.run([sys.executable, "-m", "convbench", "submit", "--server", base, "--challenge", "syn",
                                str(upload), "--token-file", str(tmp_path / "token")], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=120, check=False)
        assert again.returncode == 0 and f"already submitted as #{row.id}; not charged" in again.stdout
        for flag, said in ((["--token", token], "--token is refused"), ([f"--token={token}"], "--token is refused"),
                           (["--tok", token], "unrecognized arguments: --tok")):  # no prefix reads as --token-file
            refused = subprocess.run([sys.executable, "-m", "convbench", "submit", "--server", base, "--challenge",
                                      "syn", str(upload), *flag], cwd=tmp_path, env=env, capture_output=True,
                                     text=True, timeout=120, check=False)
            assert refused.returncode == 2 and said in refused.stderr, flag
        missing = subprocess.run([sys.executable, "-m", "convbench", "submit", "--server", base, "--challenge", "syn",
                                  str(upload)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert missing.returncode == 2 and "set $CONVBENCH_TOKEN" in missing.stderr
    with session_scope(sqlite_url) as session:
        assert session.scalar(sa.select(sa.func.count(Submission.id))) == 1


def raw_request(port: int, head: str, body_chunks, read_timeout: float = 10.0) -> tuple[bytes, int]:
    """Send a request by hand; returns (the response, body bytes sent before the server answered or hung up)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as conn:
        conn.sendall(head.encode())
        conn.setblocking(False)
        for chunk in body_chunks:
            try:
                conn.setblocking(True)
                conn.settimeout(read_timeout)
                conn.sendall(chunk)
                sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            import select

            if select.select([conn], [], [], 0)[0]:
                break  # the server answered while the body was still coming
        conn.setblocking(True)
        conn.settimeout(read_timeout)
        reply = b""
        try:
            while chunk := conn.recv(65536):
                reply += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return reply, sent


def test_a_body_over_the_cap_is_refused_before_it_is_read(sqlite_url: str) -> None:
    challenge_and_team(sqlite_url)
    limit = 256 * 1024
    with serving(sqlite_url, max_upload=limit) as base:
        port = int(base.rsplit(":", 1)[1])
        path = "/v1/challenges/syn/submissions"
        # A length over the cap with a tiny body: answered at once, without waiting for the bytes it announced.
        started = time.monotonic()
        reply, _ = raw_request(port, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                                     f"boundary=b\r\nContent-Length: {10**9}\r\n\r\n", [b"--b\r\n"])
        assert reply.startswith(b"HTTP/1.1 413") and time.monotonic() - started < 5
        assert b"request body over" in reply
        # A chunked body (no length) that grows past the cap: cut off soon after the cap, not read to its end.
        block = b"x" * 65536
        part = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.csv\"\r\n\r\n"
        chunks = [f"{len(part):x}\r\n".encode() + part + b"\r\n"]
        chunks += [f"{len(block):x}\r\n".encode() + block + b"\r\n"] * 1024  # 64 MiB if it were all read
        reply, sent = raw_request(port, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                                        "boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n", chunks)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert sent < 16 * 2**20, f"{sent:,} bytes were taken before the refusal"  # socket buffers, not 64 MiB
        # A file over the limit that fits in the cap (the form's room): refused by the gate itself, 413.
        with pytest.raises(ValidationError, match="the limit is 262,144"):
            gate_client.submit(base, "cbt_x", "syn", b"y" * (limit + 10), "p.csv")
        assert gate_client.challenges(base)  # still serving


def test_wrong_tokens_are_throttled_and_requests_rate_limited(db_url: str) -> None:
    _, token, _ = challenge_and_team(db_url)
    with serving(db_url, rate=0.1, burst=7) as base:  # 7 requests, then one each 10 s
        codes = [get(base, "/v1/me", "cbt_wrong")[0] for _ in range(5)]
        assert codes == [401] * 5
        status, body, headers = get(base, "/v1/me", "cbt_wrong")
        assert status == 429 and body["kind"] == "Throttled" and body["detail"].startswith("too many failed attempts")
        assert int(headers["Retry-After"]) >= 1
        with pytest.raises(Throttled):  # from this address, even the right token waits out the refusal
            gate_client.me(base, token)
        # Past its burst an address is shed before any database work, told when to come back.
        status, body, headers = get(base, "/v1/challenges")
        assert status == 429 and body["detail"].startswith("too many requests from this address")
        assert int(headers["Retry-After"]) >= 1
        assert get(base, "/healthz")[0] == 200  # never shed
    with serving(db_url) as base:  # a restarted gate: the count is the database's, so the refusal stands
        with pytest.raises(Throttled, match="too many failed attempts"):
            gate_client.me(base, "cbt_another_wrong_token")
        with pytest.raises(AuthError):  # another address (named by a trusted proxy) is not refused
            gate_client.me(base, "cbt_another_wrong_token", client="192.0.2.7")


def test_openapi_lists_the_endpoints(sqlite_url: str) -> None:
    challenge_and_team(sqlite_url)
    with serving(sqlite_url) as base:
        status, schema, _ = get(base, "/openapi.json")
        assert status == 200
        paths = schema["paths"]
        assert set(paths) >= {"/v1/challenges", "/v1/challenges/{slug}/submissions", "/v1/challenges/{slug}/quota",
                              "/v1/submissions/{submission_id}", "/v1/me", "/healthz"}
        upload = paths["/v1/challenges/{slug}/submissions"]["post"]
        assert "multipart/form-data" in upload["requestBody"]["content"]
        assert {"HTTPBearer"} <= set(schema["components"]["securitySchemes"])
        with urllib.request.urlopen(base + "/docs", timeout=10) as reply:
            assert b"swagger" in reply.read().lower()
