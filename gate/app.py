"""The gate's HTTP API (FastAPI): challenges, a team's quota, its submissions, and the upload that scores one.

Every refusal is a leaderboard.errors class, answered by the status in STATUS with a JSON body
{"kind": class name, "detail": the one-line message, ...}: the same words the CLI and the site show, and what
leaderboard.gate_client turns back into the class. Handlers that touch the database or score are plain `def`:
FastAPI runs them in its threadpool, so a CPU-bound scoring never stalls the event loop, and the validator's
own limit (leaderboard.submissions.VALIDATING_AT_ONCE, else ServerBusy) still bounds the work at once.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import select, text
from starlette.exceptions import HTTPException

from db.engine import cached_engine, session_scope
from db.schema import Challenge, Submission
from gate.limits import BodyCap, RateLimit, SiteClient, body_cap
from leaderboard import final, phases, quota, receipt, standings
from leaderboard.challenges import get_challenge, list_challenges
from leaderboard.errors import (
    AuthError,
    ChallengeError,
    LeaderboardError,
    QuotaExceeded,
    ScoringError,
    ServerBusy,
    Throttled,
    ValidationError,
)
from leaderboard.submissions import MAX_BYTES
from leaderboard.throttle import server_now
from leaderboard.tokens import authenticate

VERSION = "1"


class TooLarge(ValidationError):
    """A file over the upload limit that fit in the body cap (the cap leaves room for the form around it)."""


# The HTTP status of each refusal, looked up along the exception's class hierarchy (the first match wins).
STATUS: dict[type[LeaderboardError], int] = {
    AuthError: 401,
    Throttled: 429,
    QuotaExceeded: 429,
    TooLarge: 413,
    ValidationError: 422,
    ChallengeError: 404,
    ServerBusy: 503,
    final.SelectionClosed: 409,
    ScoringError: 500,
    LeaderboardError: 400,
}


def status_of(exc: LeaderboardError) -> int:
    return next(STATUS[k] for k in type(exc).__mro__ if k in STATUS)


def _seconds_until(moment: datetime) -> int:
    return max(1, int((moment - datetime.now(UTC)).total_seconds() + 0.999))


def refusal(exc: LeaderboardError) -> JSONResponse:
    """The JSON answer to a refusal, with Retry-After where waiting helps and what the client needs to rebuild it."""
    body: dict[str, Any] = {"kind": type(exc).__name__, "detail": str(exc)}
    headers: dict[str, str] = {}
    if isinstance(exc, (Throttled, ServerBusy)):
        body["retry_after_s"] = exc.retry_after_s
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, Throttled):
        body["retry_at"] = exc.retry_at.isoformat()
    if isinstance(exc, QuotaExceeded) and exc.next_slot_at is not None:
        body["next_slot_at"] = exc.next_slot_at.isoformat()
        headers["Retry-After"] = str(_seconds_until(exc.next_slot_at))
    if isinstance(exc, ValidationError):
        body["line"] = exc.line
        body["errors"] = [str(exc)]  # the validator stops at the first problem; a list leaves room for more
    if isinstance(exc, AuthError):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_of(exc), headers=headers)


# --- what the API answers (the OpenAPI schema is made from these) --------------------------------------

class ChallengeOut(BaseModel):
    slug: str
    title: str
    task: str
    dataset: str
    metric: str
    classes: int
    quota: int
    window_days: float
    # The Ladder (Blum and Hardt 2015): a team's shown public score moves only when an upload beats its shown best by
    # more than this, so probing the public part tells little; None: a plain board, exact public scores.
    ladder_threshold: float | None = None


class AllowanceOut(BaseModel):
    rule: str  # "rolling window", "per UTC day", "in the phase"
    limit: int
    used: int
    left: int
    window_days: float | None  # the rolling window's length; None for the other rules


class PhaseOut(BaseModel):
    name: str  # "open": a challenge without phases, one open-ended phase under its own rule
    starts_at: datetime | None
    ends_at: datetime | None  # None: until the host closes the challenge
    visibility: str  # public: scores shown while it runs; hidden: withheld until it ends (or the close)
    rules: list[AllowanceOut]


class QuotaOut(BaseModel):
    challenge: str
    team: str
    used: int  # in the current rolling window
    left: int | None  # under every rule of the phase at once; None: an official team, not bound by the quota
    quota: int  # the open phase's per-window quota (the challenge's own without phases)
    window_days: float
    next_slot_at: datetime | None
    phase: PhaseOut | None  # the phase open now; None: none is (`reason` says when the next one starts)
    reason: str  # why none is left, with when that changes; "" while one is


class FinalIn(BaseModel):
    submission_ids: list[int]


class FinalOut(BaseModel):
    challenge: str
    team: str
    submission_ids: list[int]  # empty: the team's best public ones count at the close
    final_count: int
    deadline: datetime | None  # None: until the host closes the challenge


class MeOut(BaseModel):
    team: str
    official: bool


class SubmissionOut(BaseModel):
    submission_id: int
    challenge: str
    team: str
    name: str
    metric: str
    hidden: bool  # True: a hidden phase withholds the scores (no value, CI, scores or rank); `status` says until when
    status: str  # "scored", or "scored; hidden until <the phase's end or the close>"
    scored_on: str  # what the scores cover, e.g. "public part: 60 of 120 test images"
    final_ranking: str  # what the official ranking at the close uses ("" without a private part)
    value: float | None  # the metric's own value (an error rate, a mAP); None while hidden
    ci: list[float] | None  # its 95% confidence interval, where the scorer gives one
    scores: dict[str, Any]  # every score, with `<name>_ci` intervals (while hidden: the metric's name only)
    rank: int | None  # the entry's place on the board (each team's best): where it is, or would be; None: hidden
    on_board: bool  # False: the team has a better entry, which the board shows instead (or its score is hidden)
    board_size: int
    quota_left: int | None
    next_slot_at: datetime | None
    existing: bool  # True: this file was submitted before; its earlier result, nothing charged
    created_at: datetime | None = None
    ladder: float | None = None  # the Ladder's threshold: value, scores and rank are its shown ones; None: exact


# --- helpers ---------------------------------------------------------------------------------------

def client_key(request: Request) -> str:
    """The throttles' key for this caller: the peer address (uvicorn's, after trusted-proxy handling)."""
    return request.client.host if request.client else "unknown"


def _out(url: str, result: quota.SubmitResult, name: str) -> SubmissionOut:
    return SubmissionOut(**receipt.answer(url, result, name))


def _phase(status: phases.Status) -> PhaseOut | None:
    rule = status.rule
    if rule is None:
        return None
    return PhaseOut(name=rule.name, starts_at=rule.starts_at, ends_at=rule.ends_at, visibility=rule.visibility,
                    rules=[AllowanceOut(**a) for a in status.allowances()])


bearer = HTTPBearer(auto_error=False, description="the team's token")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def token_of(credentials: HTTPAuthorizationCredentials | None) -> str:
    return credentials.credentials if credentials is not None else ""  # none: a failed try like any wrong token


# --- the app ---------------------------------------------------------------------------------------

def create_app(url: str, *, max_upload: int = MAX_BYTES, rate: float = 2.0, burst: int = 40) -> FastAPI:
    """The gate on the database at `url`: uploads up to `max_upload` bytes, `burst` requests at once per address
    and then `rate` a second."""
    app = FastAPI(title="convbench submission gate", version=VERSION,
                  description="Submit test predictions to a convbench challenge. Authenticate with "
                              "`Authorization: Bearer <team token>`. At most a challenge's quota of scored "
                              "submissions per team per rolling window; a rejected file costs nothing.")

    @app.exception_handler(LeaderboardError)
    async def leaderboard_error(_: Request, exc: LeaderboardError) -> JSONResponse:
        return refusal(exc)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        kind, headers = "HTTPError", dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 413:
            # The rest of the body is unread: closing is what stops it (else the server reads it to discard it).
            kind, headers["Connection"] = "ValidationError", "close"
        return JSONResponse({"kind": kind, "detail": str(exc.detail)}, exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def form_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # One line naming each field that is missing or malformed, e.g. "file: Field required".
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"kind": "ValidationError", "detail": "; ".join(problems), "errors": problems}, 422)

    @app.get("/healthz", summary="liveness and database check")
    def healthz() -> dict[str, bool]:
        with cached_engine(url).connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"ok": True}

    @app.get("/v1/challenges", summary="the challenges and their rules")
    def challenges() -> list[ChallengeOut]:
        with session_scope(url) as session:
            return [ChallengeOut(slug=c.slug, title=c.title, task=c.task, dataset=c.dataset, metric=c.metric,
                                 classes=len(c.class_names), quota=c.quota, window_days=c.window_days,
                                 ladder_threshold=c.ladder_threshold)
                    for c in list_challenges(session)]

    @app.get("/v1/me", summary="the team a token belongs to")
    def me(request: Request, credentials: Credentials) -> MeOut:
        with session_scope(url) as session:
            team = authenticate(session, token_of(credentials), client_key(request))
            return MeOut(team=team.name, official=team.official)

    @app.get("/v1/challenges/{slug}/quota", summary="the team's quota on a challenge")
    def quota_left(slug: str, request: Request, credentials: Credentials) -> QuotaOut:
        with session_scope(url) as session:
            team = authenticate(session, token_of(credentials), client_key(request))
            challenge = get_challenge(session, slug)
            status = phases.status(session, team, challenge, server_now(session.connection()))
            rule = status.rule
            return QuotaOut(challenge=slug, team=team.name, used=status.used, left=status.left,
                            quota=rule.quota if rule else challenge.quota,
                            window_days=rule.window_days if rule else challenge.window_days,
                            next_slot_at=status.next_slot_at, phase=_phase(status), reason=status.reason)

    @app.post("/v1/challenges/{slug}/submissions", summary="submit a prediction file; scored at once",
              status_code=201, responses={200: {"description": "the same file was submitted before: its result"}})
    def submit(slug: str, request: Request, response: Response, credentials: Credentials,
               file: Annotated[UploadFile, File(description="CSV, or COCO results JSON for detection")],
               name: Annotated[str, Form(description="the entry's name on the board")] = "",
               description: Annotated[str, Form()] = "",
               code_url: Annotated[str, Form(description="http(s) link to the entry's code")] = "",
               run_id: Annotated[str, Form(description="official teams only: the benchmark run that made the file "
                                                       "(its entry links to the run; one entry per run)")] = ""
               ) -> SubmissionOut:
        data = file.file.read(max_upload + 1)
        if len(data) > max_upload:
            raise TooLarge(f"the file has more than {max_upload:,} bytes; the limit is {max_upload:,}")
        result = quota.submit(url, token_of(credentials), slug, data, file.filename or "upload", label=name,
                              run_id=run_id or None, description=description, code_url=code_url,
                              throttle_key=client_key(request), max_bytes=max_upload)
        if result.existing:
            response.status_code = 200
        return _out(url, result, quota.entry_fields(name).name)

    @app.get("/v1/submissions/{submission_id}", summary="one of the team's own submissions")
    def submission(submission_id: int, request: Request, credentials: Credentials) -> SubmissionOut:
        return _submission(submission_id, request, credentials)

    @app.put("/v1/challenges/{slug}/final", summary="mark the team's final submissions for the private ranking")
    def select_final(slug: str, body: FinalIn, request: Request, credentials: Credentials) -> FinalOut:
        chosen = final.select_final(url, token_of(credentials), slug, body.submission_ids,
                                    throttle_key=client_key(request))
        return FinalOut(challenge=slug, team=chosen.team, submission_ids=chosen.submission_ids,
                        final_count=chosen.final_count, deadline=chosen.deadline)

    @app.get("/v1/challenges/{slug}/final", summary="the team's final submissions")
    def final_selection(slug: str, request: Request, credentials: Credentials) -> FinalOut:
        chosen = final.selection(url, token_of(credentials), slug, throttle_key=client_key(request))
        return FinalOut(challenge=slug, team=chosen.team, submission_ids=chosen.submission_ids,
                        final_count=chosen.final_count, deadline=chosen.deadline)

    @app.get("/v1/challenges/{slug}/standings", summary="the board with rank intervals (public part until close)")
    def challenge_standings(slug: str) -> dict[str, Any]:
        with session_scope(url) as session:
            return standings.cached(session, get_challenge(session, slug))

    @app.get("/v1/challenges/{slug}/compare", summary="is submission a better than b? paired bootstrap, McNemar")
    def compare(slug: str, a: int, b: int) -> dict[str, Any]:
        with session_scope(url) as session:
            return standings.compare(session, get_challenge(session, slug), a, b)

    def _submission(submission_id: int, request: Request, credentials: Credentials) -> SubmissionOut:
        with session_scope(url) as session:
            team = authenticate(session, token_of(credentials), client_key(request))
            row = session.scalar(select(Submission).where(Submission.id == submission_id,
                                                          Submission.team_id == team.id))
            if row is None:  # another team's id reads as a missing one: nothing about it is told
                raise ChallengeError(f"no submission {submission_id} of team {team.name!r}")
            current = session.get(Challenge, row.challenge_id)
            if current is None:  # a foreign key makes this impossible; said plainly rather than as a 500
                raise ChallengeError(f"submission {submission_id} has no challenge")
            status = quota.quota_status(session, team, current)
            result = quota.SubmitResult(row.id, current.slug, team.name, row.primary_score, dict(row.scores),
                                        status.left, status.next_slot_at, existing=True)
            name = row.label or ""
        return _out(url, result, name)

    app.add_middleware(BodyCap, cap=body_cap(max_upload))  # type: ignore[arg-type]
    app.add_middleware(RateLimit, rate=rate, burst=burst)  # type: ignore[arg-type]  # sheds before the app
    app.add_middleware(SiteClient)  # type: ignore[arg-type]  # outermost: the site's visitor is the client
    return app
