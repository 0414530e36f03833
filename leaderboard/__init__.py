"""The challenge server: challenges with held test labels, teams and tokens, throttles, validated and
rate-limited submissions, scoring (the only reader of held labels), and the admin CLI.

The Streamlit site lives in `leaderboard.app`. Import what you need from its module
(`leaderboard.quota.submit`, `leaderboard.errors.ValidationError`, ...): this package's own import
stays free, so a light module here (the CLI's parsers, the errors) loads no pandas or Arrow.
"""
