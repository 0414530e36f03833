"""Validation of prediction files: each bad input is refused with a message naming its line."""
from __future__ import annotations

import io
import json
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leaderboard.errors import ValidationError
from leaderboard.scoring import classification_scores
from leaderboard.submissions import (
    MAX_BYTES,
    Classifications,
    Detections,
    _checked_classification,
    _fast_classification,
    parse_classification,
    parse_detection,
    validate,
)

IDS = np.array([f"test_{i:06d}" for i in range(20)])
NAMES = ["disk", "square", "triangle", "ring", "cross", "diamond", "frame", "bar"]


def csv_bytes(rows: list[list[object]], header: str = "image_id,pred_1,pred_2,pred_3,pred_4,pred_5") -> bytes:
    return ("\n".join([header] + [",".join(map(str, row)) for row in rows]) + "\n").encode()


def good_rows(k: int = 5, seed: int = 0) -> list[list[object]]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(IDS))  # rows in any order
    return [[IDS[i], *rng.permutation(len(NAMES))[:k]] for i in order]


def refused(data: bytes, match: str, ids: np.ndarray = IDS, **kwargs) -> ValidationError:
    with pytest.raises(ValidationError, match=match) as info:
        parse_classification(data, ids, NAMES, **kwargs)
    return info.value


# --- the happy path ----------------------------------------------------------------------

def test_valid_file_is_aligned_to_sorted_ids() -> None:
    rows = good_rows()
    parsed = parse_classification(csv_bytes(rows), IDS, NAMES)
    assert isinstance(parsed, Classifications) and parsed.n_rows == len(IDS)
    by_id = {row[0]: row[1:] for row in rows}
    assert parsed.guesses.tolist() == [list(by_id[i]) for i in IDS]


def test_class_names_fewer_guesses_bom_crlf_and_spaces_are_accepted() -> None:
    rows = [[i, NAMES[n % 8], f" {(n + 1) % 8}"] for n, i in enumerate(IDS)]
    data = b"\xef\xbb\xbf" + csv_bytes(rows, "image_id, pred_1 ,PRED_2").replace(b"\n", b"\r\n") + b"\r\n\r\n"
    parsed = parse_classification(data, IDS, NAMES)
    assert parsed.guesses.shape == (20, 2)
    assert parsed.guesses[:, 0].tolist() == [n % 8 for n in range(20)]
    assert parsed.guesses[:, 1].tolist() == [(n + 1) % 8 for n in range(20)]


# --- each refusal names its line and its problem ------------------------------------------

def test_not_utf8_names_the_line() -> None:
    data = csv_bytes(good_rows()).replace(b"test_000002", b"test_\xff00002")
    error = refused(data, r"^line \d+: not UTF-8")
    assert error.line == data.split(b"\n").index(next(l for l in data.split(b"\n") if b"\xff" in l)) + 1


def test_empty_and_blank_files() -> None:
    refused(b"", "the file is empty")
    refused(b" \n\r\n  ", "the file is empty")
    refused(b"image_id,pred_1\n", "header but no predictions")


@pytest.mark.parametrize("header", ["id,pred_1", "image_id,pred_2", "image_id", "image_id,pred_1,pred_3",
                                    "test_000000,1,2,3,4,5", "image_id;pred_1"])
def test_bad_or_missing_header(header: str) -> None:
    error = refused(csv_bytes(good_rows(), header), r"^line 1: the header must be image_id,pred_1")
    assert error.line == 1


def test_more_than_five_guesses() -> None:
    refused(csv_bytes(good_rows(), "image_id," + ",".join(f"pred_{j}" for j in range(1, 7))),
            r"^line 1: 6 guesses per image; at most five")
    rows = good_rows()
    rows[3] = [*rows[3], 7]
    error = refused(csv_bytes(rows), r"^line 5: 7 fields, but the header has 6 .*at most five guesses")
    assert error.line == 5


def test_too_few_fields_in_a_row() -> None:
    rows = good_rows()
    rows[6] = rows[6][:3]
    refused(csv_bytes(rows), r"^line 8, pred_3: empty")


def test_unknown_id() -> None:
    rows = good_rows()
    rows[4][0] = "test_999999"
    refused(csv_bytes(rows), r"^line 6: unknown image_id 'test_999999'; test ids look like 'test_000000'")


def test_missing_ids_are_listed() -> None:
    rows = sorted(good_rows())[:-7]
    error = refused(csv_bytes(rows), r"missing predictions for 7 of 20 test images, e\.g\. test_000013, test_000014")
    assert "test_000019" not in str(error)  # a few, not all


def test_duplicate_id_names_both_lines() -> None:
    rows = good_rows()
    rows[9][0] = rows[2][0]
    refused(csv_bytes(rows), r"^line 11: duplicate image_id .* \(first on line 4\)")


def test_blank_line_in_the_middle() -> None:
    data = csv_bytes(good_rows()).replace(b"\n", b"\n\n", 3).replace(b"\n\n", b"\n", 2)
    refused(data, r"^line 4 is blank")


def test_class_id_out_of_range_and_unknown_name() -> None:
    rows = good_rows()
    rows[0][2] = 8
    refused(csv_bytes(rows), r"^line 2, pred_2: class id 8 is out of range 0\.\.7")
    rows = good_rows()
    rows[1][3] = -1
    refused(csv_bytes(rows), r"^line 3, pred_3: class id -1 is out of range")
    rows = good_rows()
    rows[5][1] = "hexagon"
    refused(csv_bytes(rows), r"^line 7, pred_1: unknown class name 'hexagon'")
    rows = good_rows()
    rows[5][1] = "1.5"
    refused(csv_bytes(rows), r"^line 7, pred_1: unknown class name '1\.5'")


def test_duplicate_guesses_in_a_row() -> None:
    rows = good_rows()
    rows[7][4] = rows[7][1]
    refused(csv_bytes(rows), rf"^line 9: class {rows[7][1]} is guessed more than once")
    rows = good_rows()
    rows[0][1:3] = [NAMES[3], 3]  # the same class, once by name and once by id
    refused(csv_bytes(rows), r"^line 2: class 3 is guessed more than once")


def test_size_cap() -> None:
    data = csv_bytes(good_rows())
    refused(data, rf"the file has {len(data):,} bytes; the limit is 100", max_bytes=100)


def test_wrong_task_and_not_bytes() -> None:
    with pytest.raises(ValidationError, match="take no submissions"):
        validate("segmentation", csv_bytes(good_rows()), "x.csv", IDS, NAMES)
    with pytest.raises(ValidationError, match="expected the file's bytes"):
        parse_classification("image_id,pred_1", IDS, NAMES)  # type: ignore[arg-type]


# --- detection files ----------------------------------------------------------------------

DET_HEADER = "image_id,class_id,score,x1,y1,x2,y2"


def det_rows() -> list[list[object]]:
    return [[IDS[i % 20], i % 8 + 1, 0.5 + i / 100, i, i + 1, i + 10, i + 12] for i in range(30)]  # classes 1..8


def det_refused(data: bytes, match: str, filename: str = "d.csv") -> ValidationError:
    with pytest.raises(ValidationError, match=match) as info:
        parse_detection(data, filename, IDS, NAMES)
    return info.value


def test_detection_csv_and_coco_json_agree() -> None:
    rows = det_rows()
    from_csv = parse_detection(csv_bytes(rows, DET_HEADER), "d.csv", IDS, NAMES)
    items = [{"image_id": r[0], "category_id": r[1], "bbox": [r[3], r[4], r[5] - r[3], r[6] - r[4]], "score": r[2]}
             for r in rows]
    from_json = parse_detection(json.dumps(items).encode(), "d.json", IDS, NAMES)
    assert isinstance(from_csv, Detections) and from_csv.n_rows == from_json.n_rows == 30
    for field in ("image_index", "class_id", "score", "boxes"):
        np.testing.assert_allclose(getattr(from_csv, field), getattr(from_json, field))
    assert from_csv.image_index.tolist() == [i % 20 for i in range(30)]
    rows[2][1] = "ring"  # a class name is as good as its id: the 4th class, id 4
    assert parse_detection(csv_bytes(rows, DET_HEADER), "d.csv", IDS, NAMES).class_id[2] == 4


@pytest.mark.parametrize("column, value, problem", [
    (2, "high", r"line 4, score: 'high' is not a number"),
    (2, "nan", r"line 4, score: 'nan' is not a finite number"),
    (3, "inf", r"line 4, x1: 'inf' is not a finite number"),
    (6, "", r"line 4, y2: empty"),
    (1, 9, r"line 4, class_id: class id 9 is out of range 1\.\.8"),
    (1, 0, r"line 4, class_id: class id 0 is out of range 1\.\.8"),
    (0, "img_1", r"line 4: unknown image_id 'img_1'"),
])
def test_detection_csv_bad_cells(column: int, value: object, problem: str) -> None:
    rows = det_rows()
    rows[2][column] = value
    assert det_refused(csv_bytes(rows, DET_HEADER), "^" + problem).line == 4


def test_detection_csv_empty_boxes_and_header() -> None:
    rows = det_rows()
    rows[4][5] = rows[4][3]
    det_refused(csv_bytes(rows, DET_HEADER), r"^line 6: x2 \(4\) must be greater than x1 \(4\)")
    rows = det_rows()
    rows[1][6] = 0
    det_refused(csv_bytes(rows, DET_HEADER), r"^line 3: y2 \(0\) must be greater than y1 \(2\)")
    det_refused(csv_bytes(det_rows(), "image_id,score,class_id,x1,y1,x2,y2"), r"^line 1: the header must be")


def test_no_detections_is_a_valid_file() -> None:
    for data, filename in ((DET_HEADER.encode(), "d.csv"), (b"[]", "d.json")):
        assert parse_detection(data, filename, IDS, NAMES).n_rows == 0


@pytest.mark.parametrize("text, problem", [
    ('[{"image_id": "test_000001", "category_id": 1, "bbox": [1, 2, 3, 4]}]', r"item 1: missing score"),
    ('[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1}]', r"item 1: image_id must be a string"),
    ('[{"image_id": "test_000001", "category_id": 1.0, "bbox": [1, 2, 3, 4], "score": 1}]',
     r"item 1: category_id must be an integer"),
    ('[{"image_id": "test_000001", "category_id": 1, "bbox": [1, 2, 3], "score": 1}]', r"item 1: bbox must be"),
    ('[{"image_id": "test_000001", "category_id": 1, "bbox": [1, 2, 0, 4], "score": 1}]',
     r"item 1: bbox w must be positive"),
    ('[{"image_id": "test_000001", "category_id": 9, "bbox": [1, 2, 3, 4], "score": 1}]',
     r"item 1: category_id 9 is out of range 1\.\.8"),
    ('[{"image_id": "test_000001", "category_id": 0, "bbox": [1, 2, 3, 4], "score": 1}]',
     r"item 1: category_id 0 is out of range"),
    ('[{"image_id": "test_000001", "category_id": 1, "bbox": [1, 2, 3, 4], "score": NaN}]', r"NaN is not a number"),
    ('[{"image_id": "test_000001", "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1e999}]',
     r"item 1: score is not a finite number"),
    ('[{"image_id": "test_000001", "category_id": 1,\n "bbox": [1, 2, 3, 4], "score": }]',
     r"^line 2, column \d+: not valid JSON"),
    ('{"image_id": "test_000001"}', r"must be a list of detections"),
    ('[1, 2]', r"item 1: expected an object"),
])
def test_coco_json_refusals(text: str, problem: str) -> None:
    det_refused(text.encode(), problem, "results.json")


# --- properties: whatever the bytes, only ValidationError ---------------------------------

VALID = csv_bytes(good_rows())
NOISE = [b",", b"\n", b"\r", b"\x00", b"\xff", b'"', b" ", b"nan", b"inf", b"-1", b"99", b"disk", b"test_000003",
         b"pred_6", b"\xef\xbb\xbf", b"1e400", b"\t", b"0x1", b"+1", b"1e2", b"007", b"\r\n"]
edits = st.lists(st.tuples(st.sampled_from(["insert", "delete", "replace", "truncate", "swap", "dup"]),
                           st.integers(0, len(VALID)), st.integers(1, 40),
                           st.one_of(st.sampled_from(NOISE), st.binary(min_size=1, max_size=6))),
                 min_size=1, max_size=6)


def mutate(data: bytes, plan: list[tuple[str, int, int, bytes]]) -> bytes:
    for op, at, size, piece in plan:
        at = min(at, len(data))
        if op == "insert":
            data = data[:at] + piece + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + size:]
        elif op == "replace":
            data = data[:at] + piece + data[at + len(piece):]
        elif op == "truncate":
            data = data[:at]
        else:
            lines = data.split(b"\n")
            i, j = at % len(lines), size % len(lines)
            if op == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines.insert(j, lines[i])
            data = b"\n".join(lines)
    return data


def check_outcome(data: bytes, task: str, filename: str) -> None:
    try:
        parsed = validate(task, data, filename, IDS, NAMES)
    except ValidationError as exc:
        assert str(exc)
        if exc.line is not None:
            assert str(exc).startswith(f"line {exc.line}")
        return
    if isinstance(parsed, Classifications):
        assert parsed.guesses.shape[0] == len(IDS) and ((parsed.guesses >= 0) & (parsed.guesses < 8)).all()
        assert all(len(set(row)) == len(row) for row in parsed.guesses.tolist())
    else:
        assert np.isfinite(parsed.boxes).all() and (parsed.boxes[:, 2:] > parsed.boxes[:, :2]).all()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits)
def test_mutated_classification_files_raise_only_validation_errors(plan) -> None:
    check_outcome(mutate(VALID, plan), "classification", "p.csv")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits)
def test_fast_path_accepts_only_what_the_pandas_path_accepts_alike(plan) -> None:
    """The Arrow fast path may pass a file on to the pandas path, but never accept one differently."""
    data = mutate(VALID, plan)
    fast = _fast_classification(data, IDS, len(NAMES), MAX_BYTES)
    if fast is None:
        return
    checked = _checked_classification(data, IDS, NAMES)
    assert fast.n_rows == checked.n_rows and fast.guesses.tolist() == checked.guesses.tolist()


def test_fast_path_takes_a_clean_file_and_leaves_the_rest() -> None:
    assert _fast_classification(VALID, IDS, len(NAMES), MAX_BYTES) is not None
    crlf = b"\xef\xbb\xbf" + VALID.replace(b"\n", b"\r\n")
    assert _fast_classification(crlf, IDS, len(NAMES), MAX_BYTES).guesses.tolist() == \
        parse_classification(VALID, IDS, NAMES).guesses.tolist()
    read_only = IDS.copy()
    read_only.setflags(write=False)  # the server's cached ids: their Arrow copy is kept
    assert _fast_classification(VALID, read_only, len(NAMES), MAX_BYTES) is not None
    rows = good_rows()
    rows[3][2] = "0x1"  # Arrow would cast it to 1; pandas reads a class name
    for data in (csv_bytes(rows), VALID.replace(b"test_000004", b" test_000004"), VALID + b"\n\n"):
        assert _fast_classification(data, IDS, len(NAMES), MAX_BYTES) is None
    refused(csv_bytes(rows), r"^line 5, pred_2: unknown class name '0x1'")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_validation_errors(data: bytes) -> None:
    check_outcome(data, "classification", "p.csv")
    check_outcome(b"image_id,pred_1\n" + data, "classification", "p.csv")
    check_outcome(data, "detection", "p.csv")
    check_outcome(data, "detection", "p.json")


DET_CSV = csv_bytes(det_rows(), DET_HEADER)
DET_JSON = json.dumps([{"image_id": r[0], "category_id": r[1], "bbox": [r[3], r[4], 10, 11], "score": r[2]}
                       for r in det_rows()[:8]], indent=1).encode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([(DET_CSV, "d.csv"), (DET_JSON, "d.json")]), edits)
def test_mutated_detection_files_raise_only_validation_errors(source, plan) -> None:
    data, filename = source
    check_outcome(mutate(data, plan), "detection", filename)


# --- speed --------------------------------------------------------------------------------

def test_50k_top5_file_validates_and_scores_well_under_half_a_second() -> None:
    n, n_classes = 50_000, 1000
    rng = np.random.default_rng(0)
    ids = np.array([f"test_{i:06d}" for i in range(n)])
    guesses = np.argsort(rng.random((n, 50)), axis=1)[:, :5] * 20
    lines = ["image_id,pred_1,pred_2,pred_3,pred_4,pred_5"]
    lines += [f"{ids[i]},{','.join(map(str, guesses[i]))}" for i in rng.permutation(n)]
    data = ("\n".join(lines) + "\n").encode()
    names, labels = [f"n{c:08d}" for c in range(n_classes)], rng.integers(0, n_classes, n)

    def best_of(runs: int, fn) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    full = best_of(3, lambda: classification_scores(parse_classification(data, ids, names).guesses, labels))
    read_only = best_of(3, lambda: pd.read_csv(io.BytesIO(data), dtype=str))
    print(f"validate+score {full * 1000:.0f} ms; pandas.read_csv alone {read_only * 1000:.0f} ms")
    assert full < 0.5
    assert (parse_classification(data, ids, names).guesses == guesses).all()
