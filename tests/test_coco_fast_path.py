"""The COCO results fast path (msgspec) accepts only what the windowed reader accepts, with the same result."""
from __future__ import annotations

import json

import numpy as np
import pytest

from leaderboard.errors import ValidationError
from leaderboard.submissions import _fast_coco_json, _parse_coco_json, parse_detection

IDS = np.array([f"test_{i:06d}" for i in range(20)])
N_CLASSES = 3


def valid_items(seed: int, n: int = 200) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"image_id": str(IDS[rng.integers(len(IDS))]), "category_id": int(rng.integers(1, N_CLASSES + 1)),
             "bbox": [float(rng.random() * 50), int(rng.integers(0, 50)), float(rng.random() * 20 + 0.5), 3],
             "score": float(rng.random()) if i % 3 else int(rng.integers(0, 2))} for i in range(n)]


def same(a, b) -> None:
    for field in ("image_index", "class_id", "score", "boxes"):
        left, right = getattr(a, field), getattr(b, field)
        assert left.dtype == right.dtype and np.array_equal(left, right), field
    assert a.n_rows == b.n_rows


@pytest.mark.parametrize("seed", range(5))
def test_a_clean_file_reads_the_same_by_both_paths(seed):
    text = json.dumps(valid_items(seed))
    fast = _fast_coco_json(text.encode(), IDS, N_CLASSES)
    assert fast is not None
    same(fast, _parse_coco_json(text, IDS, N_CLASSES))


def test_an_empty_list_is_no_detections():
    assert _fast_coco_json(b"[]", IDS, N_CLASSES).n_rows == 0


BAD_ITEMS = {
    "unknown image": {"image_id": "test_999999"},
    "class 0 (background)": {"category_id": 0},
    "class beyond the last": {"category_id": N_CLASSES + 1},
    "class as a float": {"category_id": 1.0},
    "class as a bool": {"category_id": True},
    "class beyond int64": {"category_id": 2 ** 63 + 5},
    "score as a string": {"score": "0.5"},
    "score as a bool": {"score": False},
    "bbox of three": {"bbox": [1, 2, 3]},
    "zero width": {"bbox": [1, 2, 0, 3]},
    "negative height": {"bbox": [1, 2, 3, -1]},
    "an extra key": {"segmentation": []},
    "image id as a number": {"image_id": 3},
}


@pytest.mark.parametrize("problem", BAD_ITEMS)
def test_the_fast_path_declines_what_the_slow_path_refuses(problem):
    items = valid_items(0, 10)
    items[4] = {**items[4], **BAD_ITEMS[problem]}
    data = json.dumps(items).encode()
    assert _fast_coco_json(data, IDS, N_CLASSES) is None
    with pytest.raises(ValidationError, match=r"^item 5"):
        parse_detection(data, "x.json", IDS, [f"c{i}" for i in range(N_CLASSES)])


@pytest.mark.parametrize("text", ['{"a": 1}', "[1, 2]", '[{"image_id": "test_000000"}]', "[NaN]",
                                  ('[{"image_id": "test_000000", "category_id": 1, "bbox": [1, 2, 3, 4], '
                                   '"score": 1e999}]'), "[", "[] []"])
def test_malformed_files_go_to_the_slow_path(text):
    assert _fast_coco_json(text.encode(), IDS, N_CLASSES) is None
    with pytest.raises(ValidationError):
        parse_detection(text.encode(), "x.json", IDS, [f"c{i}" for i in range(N_CLASSES)])
