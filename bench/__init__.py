"""Performance harness: `python -m bench --help`.

Each benchmark interleaves a baseline and the measured path in one process (one Ray session),
repetition by repetition, so that load from elsewhere on the machine hits both alike and
largely cancels in their ratio. Figures are medians over the repetitions.
"""
