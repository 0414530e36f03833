"""The prediction files' headers, defined once: the workers write them, the challenge server reads them.

Classification: `image_id,pred_1,...,pred_k`, 1 <= k <= MAX_GUESSES guesses per image, best first.
Detection: `image_id,class_id,score,x1,y1,x2,y2`, one row per detection (class ids 1..C).
"""
from __future__ import annotations

MAX_GUESSES = 5  # ILSVRC's top-5
DETECTION_CSV_HEADER = ("image_id", "class_id", "score", "x1", "y1", "x2", "y2")


def classification_header(k: int) -> tuple[str, ...]:
    """The header of a file with k guesses per image."""
    return ("image_id", *(f"pred_{j}" for j in range(1, k + 1)))
