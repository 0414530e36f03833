"""The submission gate: the one HTTP service that takes prediction files, and the only process that holds
the database role that reads held labels (docs/ARCHITECTURE.md, "Submission gate").

`python -m gate --db URL` or `convbench gate`. Imports db and leaderboard (no torch); nothing below it
imports it.
"""
