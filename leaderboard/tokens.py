"""Teams and their API tokens.

A token is 32 random bytes, shown once at creation and stored only as its SHA-256: a slow
password hash buys nothing for a secret with 256 bits of entropy. Unknown, wrong and revoked
tokens all raise the same AuthError, and a throttle kept in the database (leaderboard.throttle)
refuses a caller who keeps failing, whatever browser session or process it comes from.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from db.schema import Team
from leaderboard import audit, throttle
from leaderboard.errors import AuthError, ChallengeError

TOKEN_BYTES = 32


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_team(session: Session, name: str, official: bool = False, actor: str = "admin") -> str:
    """Create a team; returns its token, which is not stored and cannot be shown again."""
    name = name.strip()
    if not name or len(name) > 128:
        raise ChallengeError("a team name needs 1-128 characters")
    if session.scalar(select(Team.id).where(Team.name == name)) is not None:
        raise ChallengeError(f"team {name!r} exists")
    # A fixed prefix: a token that began with "-" would read as an option on a command line.
    token = "cbt_" + secrets.token_urlsafe(TOKEN_BYTES)
    session.add(Team(name=name, token_hash=hash_token(token), official=official))
    session.flush()
    audit.record(session, "token.issued", actor, {"team": name, "official": official}, subject=f"team {name}")
    return token


def revoke(session: Session, team_name: str, actor: str = "admin") -> Team:
    """Revoke a team's token: it authenticates no more. The team's submissions stay."""
    team = session.scalar(select(Team).where(Team.name == team_name))
    if team is None:
        raise ChallengeError(f"no team {team_name!r}")
    team.revoked = True
    session.flush()
    audit.record(session, "token.revoked", actor, {"team": team_name}, subject=f"team {team_name}")
    return team


def auth_keys(token: object, client: str | None) -> list[str]:
    """The throttle keys of an attempt: the token's hash prefix (a token retried from many addresses) and,
    when known, the client (many tokens tried from one address)."""
    keys = [throttle.token_key(hash_token(token if isinstance(token, str) else ""))]
    if client:
        keys.append(throttle.client_key(client))
    return keys


def authenticate(session: Session, token: str, throttle_key: str | None = None,
                 policy: throttle.Policy = throttle.AUTH) -> Team:
    """The team holding `token`; AuthError ("invalid or revoked token") otherwise.

    `throttle_key` names the client: its address on the site, "cli:user@host" from the CLI. Failures
    are counted in the database per token hash prefix and per client; past the policy's free tries a
    caller is refused with Throttled ("try again in N s") before its token is even looked up. The
    lookup runs on the throttle's own connection, so it sees committed teams only.
    """
    try:
        with throttle.guarded(session.get_bind(), policy, auth_keys(token, throttle_key), failure=AuthError) as conn:
            # Looked up inside the throttle's locked transaction: concurrent guesses of one key queue there.
            team_id = _team_id(conn, token)
    except AuthError:
        # Neither the token nor its hash: the client and the throttle's token key (a hash prefix) say enough.
        audit.record_apart(session.get_bind(), "auth.failure", throttle_key or "unknown client",
                           {"client": throttle_key, "token_key": auth_keys(token, None)[0]})
        raise
    team = session.get(Team, team_id)
    if team is None or team.revoked:  # deleted or revoked in the moment between: as any bad token
        raise AuthError()
    return team


def _team_id(conn: Connection, token: object) -> int:
    if isinstance(token, str) and token:
        digest = hash_token(token)
        row = conn.execute(select(Team.id, Team.token_hash, Team.revoked).where(Team.token_hash == digest)).first()
        if row is not None and hmac.compare_digest(row.token_hash, digest) and not row.revoked:
            return row.id
    raise AuthError()


def list_teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).order_by(Team.id)))
