"""The challenge server: challenges with held test labels, teams and tokens, validated and
rate-limited submissions, scoring (the only reader of held labels), and the admin CLI.

The Streamlit site lives in `leaderboard.app`; what it and the orchestrator call is re-exported here.
"""
from leaderboard.challenges import create_challenge, find_challenge, get_challenge, list_challenges
from leaderboard.errors import (AuthError, ChallengeError, LeaderboardError, QuotaExceeded, ScoringError, Throttled,
                                ValidationError)
from leaderboard.quota import QuotaStatus, SubmitResult, check_upload, quota_status, rescore, submit
from leaderboard.scoring import metric_value
from leaderboard.submissions import Classifications, Detections, validate
from leaderboard.tokens import authenticate, create_team, revoke

__all__ = [
    "AuthError", "ChallengeError", "Classifications", "Detections", "LeaderboardError", "QuotaExceeded",
    "QuotaStatus", "ScoringError", "SubmitResult", "Throttled", "ValidationError", "authenticate", "check_upload",
    "create_challenge", "create_team", "find_challenge", "get_challenge", "list_challenges", "metric_value",
    "quota_status", "rescore", "revoke", "submit", "validate",
]
