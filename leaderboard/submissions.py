"""Validation of uploaded prediction files: bytes in, arrays aligned to the challenge's test ids out.

Formats:
- classification: CSV `image_id,pred_1,...,pred_k`, 1 <= k <= 5 guesses, best first; a guess is
  a class id (0..C-1) or a class name; one row per test image.
- detection: CSV `image_id,class_id,score,x1,y1,x2,y2`, or a COCO results JSON list of
  `{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`. Detection class ids run 1..C
  (0 is the detectors' background, as in workers.detection); the CSV also takes class names.

Every rejection is a ValidationError naming the line (JSON: the item) and the problem. This
module never sees a held label, so no message can carry one.

The happy path is vectorised: a well-formed classification file of class ids is read by Arrow's
CSV reader and matched against the test ids by Arrow's hash lookup (`_fast_classification`, a
50,000-row top-5 file in about 20 ms); anything it does not accept as clean goes through the
pandas path, which also words every error. Python loops run only to word an error or on per-item JSON.
"""
from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from leaderboard.errors import ValidationError

MAX_BYTES = 50 * 1024 * 1024
MAX_GUESSES = 5
SHOWN = 5  # how many missing ids an error lists
DETECTION_CSV_HEADER = ("image_id", "class_id", "score", "x1", "y1", "x2", "y2")
DETECTION_NUMBERS = ("score", "x1", "y1", "x2", "y2")
COCO_KEYS = ("image_id", "category_id", "bbox", "score")
FIRST_CLASS_ID = {"classification": 0, "detection": 1}
_INTEGERS = re.compile(r"[^,]*(,\s*[+-]?\d+\s*)+")  # a data row whose guesses are all integers


@dataclass(frozen=True)
class Classifications:
    """Row i holds the guesses for the challenge's i-th test id (ids sorted), best first."""

    guesses: np.ndarray  # N x k int64
    n_rows: int


@dataclass(frozen=True)
class Detections:
    """One entry per detection; boxes are x1, y1, x2, y2 in pixels."""

    image_index: np.ndarray  # D int64, positions in the challenge's sorted test ids
    class_id: np.ndarray  # D int64
    score: np.ndarray  # D float64
    boxes: np.ndarray  # D x 4 float64
    n_rows: int


Parsed = Classifications | Detections


def validate(task: str, data: bytes, filename: str, ids: np.ndarray, class_names: list[str],
             max_bytes: int = MAX_BYTES) -> Parsed:
    """Check an upload against a challenge (its task, sorted test ids, class names); raise ValidationError."""
    if task == "classification":
        return parse_classification(data, ids, class_names, max_bytes)
    if task == "detection":
        return parse_detection(data, filename, ids, class_names, max_bytes)
    raise ValidationError(f"challenges of task {task!r} take no submissions")


# --- shared pieces -------------------------------------------------------------------------

def _show(value: Any, limit: int = 40) -> str:
    """The uploader's own value, quoted and cut short so an error line stays readable."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def decode(data: bytes, max_bytes: int = MAX_BYTES) -> str:
    """The file as text with '\\n' line ends and no trailing blank lines."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValidationError(f"expected the file's bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise ValidationError(f"the file has {len(data):,} bytes; the limit is {max_bytes:,}")
    if data.startswith(codecs.BOM_UTF8):  # spreadsheet programs write one
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValidationError(f"line {line}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                              line) from None
    # pandas' parser also ends a line at a bare '\r'; normalising keeps our line numbers equal to its.
    text = text.replace("\r\n", "\n").replace("\r", "\n").rstrip()
    if not text:
        raise ValidationError("the file is empty")
    return text


def _header(text: str) -> tuple[str, list[str]]:
    first = text.split("\n", 1)[0]
    return first, [field.strip().lower() for field in first.split(",")]


def _read_rows(text: str, n_fields: int, what: str, dtype: Any = object) -> pd.DataFrame:
    """The data rows (header skipped), one physical line per row; `what` describes a row for errors.

    A ValueError other than ValidationError means a cell did not fit `dtype`.
    """
    try:
        # QUOTE_NONE and skip_blank_lines=False: data row r is line r + 2 exactly, so errors can name it.
        with np.errstate(invalid="ignore"):  # 'inf' in an integer column: refused below, not warned about
            return pd.read_csv(io.StringIO(text), header=None, skiprows=1, names=range(n_fields), dtype=dtype,
                               na_filter=False, quoting=csv.QUOTE_NONE, skip_blank_lines=False,
                               skipinitialspace=True, engine="c")
    except pd.errors.EmptyDataError:
        return pd.DataFrame({i: pd.Series(dtype=object) for i in range(n_fields)})
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if found:
            expected, line, saw = map(int, found.groups())
            raise ValidationError(f"line {line}: {saw} fields, but the header has {expected} ({what})", line) from None
        raise ValidationError(f"not a readable CSV file: {str(exc).strip()}") from None
    except csv.Error as exc:
        raise ValidationError(f"not a readable CSV file: {str(exc).strip()}") from None


def _first_data_row(text: str) -> str:
    start = text.find("\n") + 1
    if not start:
        return ""
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


def _reject_blank_rows(rows: np.ndarray) -> None:
    blank = np.flatnonzero((rows == "").all(axis=1))
    if blank.size:
        raise ValidationError(f"line {_line(int(blank[0]))} is blank", _line(int(blank[0])))


def _line(row: int) -> int:
    return row + 2  # one for the header, one because lines count from 1


def class_lookup(class_names: list[str], first: int = 0) -> dict[str, int]:
    """Text that names a class -> its id (`first` is the first class's): the id as an integer, or the name.

    Ids win over names, so a name that spells another class's id cannot redirect a guess.
    """
    lookup = {str(first + i): first + i for i in range(len(class_names))}
    for i, name in enumerate(class_names):
        lookup.setdefault(str(name), first + i)
    return lookup


def _class_codes(values: np.ndarray, lookup: dict[str, int]) -> np.ndarray:
    """Class ids for an array of strings; -1 where a string names no class."""
    categories = pd.Index(list(lookup), dtype=object)
    codes = categories.get_indexer(values.ravel())
    ids = np.fromiter(lookup.values(), dtype=np.int64, count=len(lookup))
    return np.where(codes >= 0, ids[codes], -1).reshape(values.shape)


def _class_problem(value: str, first: int, n_classes: int) -> str:
    span = f"{first}..{first + n_classes - 1}"
    if value == "":
        return "empty"
    if re.fullmatch(r"[+-]?\d+", value.strip()):
        return f"class id {value.strip()} is out of range {span}"
    return f"unknown class name {_show(value)} (use class ids {span} or the challenge's class names)"


def _image_positions(values: np.ndarray, ids: np.ndarray, place: Callable[[int], str],
                     line_of: Callable[[int], int] | None) -> np.ndarray:
    """Positions of the uploaded image ids among the challenge's sorted ids; unknown ids are rejected."""
    positions = pd.Index(ids, dtype=object).get_indexer(values)
    unknown = np.flatnonzero(positions < 0)
    if unknown.size:
        row, value = int(unknown[0]), values[unknown[0]]
        more = f" (and {unknown.size - 1} more unknown ids)" if unknown.size > 1 else ""
        problem = "image_id is empty" if value == "" else f"unknown image_id {_show(value)}"
        example = f"; test ids look like {str(ids[0])!r}" if len(ids) else ""
        raise ValidationError(f"{place(row)}: {problem}{example}{more}", line_of(row) if line_of else None)
    return positions


def _row_place(row: int) -> str:
    return f"line {_line(row)}"


def _item_place(item: int) -> str:
    return f"item {item + 1}"


# --- classification ------------------------------------------------------------------------

def parse_classification(data: bytes, ids: np.ndarray, class_names: list[str],
                         max_bytes: int = MAX_BYTES) -> Classifications:
    fast = _fast_classification(data, ids, len(class_names), max_bytes)
    if fast is not None:
        return fast
    return _checked_classification(data, ids, class_names, max_bytes)


def _checked_classification(data: bytes, ids: np.ndarray, class_names: list[str],
                            max_bytes: int = MAX_BYTES) -> Classifications:
    """The pandas path: reads any file, and words the first problem of one it refuses."""
    text = decode(data, max_bytes)
    first, fields = _header(text)
    k = len(fields) - 1
    if k < 1 or fields[0] != "image_id" or fields[1:] != [f"pred_{j}" for j in range(1, k + 1)]:
        raise ValidationError(f"line 1: the header must be image_id,pred_1,...,pred_k with 1 <= k <= {MAX_GUESSES} "
                              f"guesses, best first; got {_show(first, 60)}", 1)
    if k > MAX_GUESSES:
        raise ValidationError(f"line 1: {k} guesses per image; at most five are allowed (pred_1..pred_5)", 1)
    image_ids, guesses = _read_guesses(text, k, class_names)
    if len(image_ids) == 0:
        raise ValidationError(f"the file has a header but no predictions; expected one row for each of the "
                              f"{len(ids)} test images")
    positions = _image_positions(image_ids, ids, _row_place, _line)
    _reject_duplicate_rows(positions, image_ids)
    if k > 1:
        ordered = np.sort(guesses, axis=1)
        repeated = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
        if repeated.size:
            row = int(repeated[0])
            values, counts = np.unique(guesses[row], return_counts=True)
            raise ValidationError(f"line {_line(row)}: class {int(values[counts > 1][0])} is guessed more than once; "
                                  f"the guesses in a row must differ", _line(row))
    if len(positions) < len(ids):
        missing = np.ones(len(ids), dtype=bool)
        missing[positions] = False
        shown = ", ".join(ids[missing][:SHOWN])
        raise ValidationError(f"missing predictions for {int(missing.sum())} of {len(ids)} test images, "
                              f"e.g. {shown}")
    aligned = np.empty((len(ids), k), dtype=np.int64)
    aligned[positions] = guesses
    return Classifications(aligned, len(image_ids))


def _read_guesses(text: str, k: int, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The rows' image ids (strings) and guesses (class ids, N x k)."""
    what = f"image_id and {k} guess{'es' if k > 1 else ''}" + ("; at most five guesses are allowed"
                                                              if k == MAX_GUESSES else "")
    n_classes = len(class_names)
    try:
        # The common case, class ids: the C parser reads the integers itself, no Python per cell.
        # A first row of class names skips the attempt, which would only fail after a full parse.
        if not _INTEGERS.fullmatch(_first_data_row(text)):
            raise ValueError("not class ids")
        frame = _read_rows(text, k + 1, what, {0: object, **{j: np.int64 for j in range(1, k + 1)}})
        guesses = frame.iloc[:, 1:].to_numpy(dtype=np.int64)
    except ValidationError:
        raise
    except (ValueError, OverflowError):
        # Some cell is not an integer: class names, or an error to word. Read everything as text.
        frame = _read_rows(text, k + 1, what)
        _reject_blank_rows(frame.to_numpy(dtype=object))
        cells = frame.iloc[:, 1:].to_numpy(dtype=object)
        guesses = _class_codes(cells, class_lookup(class_names))
        bad = np.argwhere(guesses < 0)
        if bad.size:
            row, col = map(int, bad[0])
            raise ValidationError(f"line {_line(row)}, pred_{col + 1}: {_class_problem(cells[row, col], 0, n_classes)}",
                                  _line(row)) from None
    bad = np.argwhere((guesses < 0) | (guesses >= n_classes))
    if bad.size:
        row, col = map(int, bad[0])
        raise ValidationError(f"line {_line(row)}, pred_{col + 1}: class id {guesses[row, col]} is out of range "
                              f"0..{n_classes - 1}", _line(row))
    return frame[0].to_numpy(dtype=object), guesses


# The fast path: only a clean file of class ids; None sends the file to the pandas path.

_ARROW_IDS: dict[int, tuple[weakref.ref, pa.Array]] = {}
_ARROW_IDS_KEPT = 8
_ARROW_IDS_LOCK = threading.Lock()


def _arrow_ids(ids: np.ndarray) -> pa.Array:
    """The test ids as an Arrow array; kept per array for one that is read-only (the server's cached ids)."""
    if ids.flags.writeable:
        return pa.array(ids.tolist(), type=pa.string())
    with _ARROW_IDS_LOCK:
        kept = _ARROW_IDS.get(id(ids))
        if kept is not None and kept[0]() is ids:
            return kept[1]
    converted = pa.array(ids.tolist(), type=pa.string())
    with _ARROW_IDS_LOCK:
        for key in [key for key, (ref, _) in _ARROW_IDS.items() if ref() is None]:
            del _ARROW_IDS[key]
        while len(_ARROW_IDS) >= _ARROW_IDS_KEPT:
            del _ARROW_IDS[next(iter(_ARROW_IDS))]
        _ARROW_IDS[id(ids)] = (weakref.ref(ids), converted)
    return converted


def _fast_header(data: bytes) -> int | None:
    """k for a header image_id,pred_1..pred_k (1 <= k <= 5), as parse_classification reads headers; else None."""
    data = data.removeprefix(codecs.BOM_UTF8)
    ends = [i for i in (data.find(b"\n", 0, 1024), data.find(b"\r", 0, 1024)) if i >= 0]
    if not ends:
        return None
    try:
        fields = [field.strip().lower() for field in data[:min(ends)].decode("utf-8").split(",")]
    except UnicodeDecodeError:
        return None
    k = len(fields) - 1
    if not 1 <= k <= MAX_GUESSES or fields != ["image_id", *(f"pred_{j}" for j in range(1, k + 1))]:
        return None
    return k


def _fast_classification(data: bytes, ids: np.ndarray, n_classes: int, max_bytes: int) -> Classifications | None:
    """A file of plain class ids that passes every check, read by Arrow; None for anything else.

    Exact where it accepts: no quoting (as QUOTE_NONE), blank lines and ragged rows fail the read,
    ids are compared as written (the pandas path strips a leading space: such a file goes there),
    and a guess must be ASCII digits only (Arrow's cast would take '0x1f'). Whatever it refuses,
    the pandas path reads again, so every error message comes from one place.
    """
    if not isinstance(data, bytes) or len(data) > max_bytes or len(ids) == 0:
        return None
    k = _fast_header(data)
    if k is None:
        return None
    names = [f"c{j}" for j in range(k + 1)]
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(data),
            read_options=pa_csv.ReadOptions(skip_rows=1, column_names=names),
            parse_options=pa_csv.ParseOptions(quote_char=False, newlines_in_values=False, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(column_types={name: pa.string() for name in names}, null_values=[],
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowException, ValueError):
        return None
    if table.num_rows != len(ids):
        return None
    columns = []
    for name in names[1:]:
        cells = table.column(name)
        if not pc.all(pc.ascii_is_decimal(cells)).as_py():
            return None
        try:
            columns.append(pc.cast(cells, pa.int64()).to_numpy())
        except pa.ArrowException:  # beyond int64
            return None
    guesses = np.column_stack(columns)
    if guesses.max() >= n_classes:  # ASCII digits: never negative
        return None
    for a, b in itertools.combinations(range(k), 2):
        if (guesses[:, a] == guesses[:, b]).any():
            return None
    positions = pc.index_in(table.column("c0"), value_set=_arrow_ids(ids))
    if positions.null_count:
        return None
    positions = positions.to_numpy().astype(np.int64)
    # As many rows as ids, each naming a known id: all ids are there exactly when none repeats.
    if np.bincount(positions, minlength=len(ids)).max() != 1:
        return None
    aligned = np.empty((len(ids), k), dtype=np.int64)
    aligned[positions] = guesses
    return Classifications(aligned, table.num_rows)


def _reject_duplicate_rows(positions: np.ndarray, image_ids: np.ndarray) -> None:
    duplicated = pd.Index(positions).duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        first = int(np.flatnonzero(positions == positions[row])[0])
        raise ValidationError(f"line {_line(row)}: duplicate image_id {_show(image_ids[row])} "
                              f"(first on line {_line(first)})", _line(row))


# --- detection -----------------------------------------------------------------------------

def parse_detection(data: bytes, filename: str, ids: np.ndarray, class_names: list[str],
                    max_bytes: int = MAX_BYTES) -> Detections:
    text = decode(data, max_bytes)
    if filename.lower().endswith(".json") or text.lstrip().startswith("["):
        return _parse_coco_json(text, ids, len(class_names))
    return _parse_detection_csv(text, ids, class_names)


def _parse_detection_csv(text: str, ids: np.ndarray, class_names: list[str]) -> Detections:
    first, fields = _header(text)
    if tuple(fields) != DETECTION_CSV_HEADER:
        raise ValidationError(f"line 1: the header must be {','.join(DETECTION_CSV_HEADER)} "
                              f"(or upload a COCO results .json); got {_show(first, 60)}", 1)
    rows = _read_rows(text, len(DETECTION_CSV_HEADER), ",".join(DETECTION_CSV_HEADER)).to_numpy(dtype=object)
    if len(rows) == 0:
        return _no_detections()  # a detector that finds nothing has a score too: zero
    _reject_blank_rows(rows)
    positions = _image_positions(rows[:, 0], ids, _row_place, _line)
    first = FIRST_CLASS_ID["detection"]
    classes = _class_codes(rows[:, 1], class_lookup(class_names, first))
    bad = np.flatnonzero(classes < 0)
    if bad.size:
        row = int(bad[0])
        raise ValidationError(f"line {_line(row)}, class_id: "
                              f"{_class_problem(rows[row, 1], first, len(class_names))}", _line(row))
    numbers = np.column_stack([pd.to_numeric(rows[:, 2 + j], errors="coerce") for j in range(5)]).astype(np.float64)
    bad_cells = np.argwhere(~np.isfinite(numbers))
    if bad_cells.size:
        row, col = map(int, bad_cells[0])
        raise ValidationError(f"line {_line(row)}, {DETECTION_NUMBERS[col]}: {_number_problem(rows[row, 2 + col])}",
                              _line(row))
    boxes = numbers[:, 1:]
    for low, high in ((0, 2), (1, 3)):
        bad = np.flatnonzero(boxes[:, high] <= boxes[:, low])
        if bad.size:
            row = int(bad[0])
            lo_name, hi_name = DETECTION_CSV_HEADER[3 + low], DETECTION_CSV_HEADER[3 + high]
            raise ValidationError(f"line {_line(row)}: {hi_name} ({boxes[row, high]:g}) must be greater than "
                                  f"{lo_name} ({boxes[row, low]:g})", _line(row))
    return Detections(positions.astype(np.int64), classes.astype(np.int64), numbers[:, 0], boxes, len(rows))


def _no_detections() -> Detections:
    return Detections(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4)), 0)


def _number_problem(value: str) -> str:
    if value.strip() == "":
        return "empty"
    try:
        float(value)
    except ValueError:
        return f"{_show(value)} is not a number"
    return f"{_show(value)} is not a finite number"


def _parse_coco_json(text: str, ids: np.ndarray, n_classes: int) -> Detections:
    try:
        items = json.loads(text, parse_constant=_reject_json_constant)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})",
                              exc.lineno) from None
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise ValidationError("the JSON must be a list of detections "
                              '[{"image_id": ..., "category_id": ..., "bbox": [x, y, w, h], "score": ...}, ...]')
    if not items:
        return _no_detections()
    if not _well_typed(items):
        _explain_bad_item(items)
    image_ids = np.array([item["image_id"] for item in items], dtype=object)
    classes = np.array([item["category_id"] for item in items], dtype=object)
    try:
        scores = np.array([item["score"] for item in items], dtype=np.float64)
        boxes = np.array([item["bbox"] for item in items], dtype=np.float64)
    except OverflowError:  # an integer beyond a double's range
        row = next(n for n, item in enumerate(items, 1)
                   if any(abs(v) > 1e308 for v in (item["score"], *item["bbox"])))
        raise ValidationError(f"item {row}: a number too large for a score or a box coordinate") from None
    positions = _image_positions(image_ids, ids, _item_place, None)
    first = FIRST_CLASS_ID["detection"]
    bad = np.flatnonzero((classes < first) | (classes >= first + n_classes))
    if bad.size:
        raise ValidationError(f"item {int(bad[0]) + 1}: category_id {_show(classes[bad[0]])} is out of range "
                              f"{first}..{first + n_classes - 1}")
    bad_cells = np.argwhere(~np.isfinite(np.column_stack([scores, boxes])))
    if bad_cells.size:  # a JSON number too large for a double parses as inf
        row, col = map(int, bad_cells[0])
        raise ValidationError(f"item {row + 1}: {('score', 'bbox x', 'bbox y', 'bbox w', 'bbox h')[col]} "
                              f"is not a finite number")
    for col, name in ((2, "w"), (3, "h")):
        bad = np.flatnonzero(boxes[:, col] <= 0)
        if bad.size:
            raise ValidationError(f"item {int(bad[0]) + 1}: bbox {name} must be positive, got {boxes[bad[0], col]:g}")
    corners = np.column_stack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]])
    return Detections(positions.astype(np.int64), classes.astype(np.int64), scores, corners, len(items))


def _well_typed(items: list[Any]) -> bool:
    """Every item is {image_id: str, category_id: int, bbox: [4 numbers], score: number}.

    Checked with map() over whole columns, not a loop per item: set(map(type, ...)) runs in C.
    """
    numbers = {int, float}
    try:
        if set(map(type, items)) != {dict} or set(map(len, items)) != {len(COCO_KEYS)}:
            return False
        columns = {key: [item[key] for item in items] for key in COCO_KEYS}
    except KeyError:
        return False
    boxes = columns["bbox"]
    return (set(map(type, columns["image_id"])) == {str} and set(map(type, columns["category_id"])) == {int}
            and set(map(type, columns["score"])) <= numbers and set(map(type, boxes)) == {list}
            and set(map(len, boxes)) == {4} and set(map(type, itertools.chain.from_iterable(boxes))) <= numbers)


def _reject_json_constant(name: str) -> float:
    raise ValidationError(f"not valid JSON: {name} is not a number JSON allows")


def _explain_bad_item(items: list[Any]) -> None:
    """Raise an error naming the first malformed JSON item (the slow path, for a rejected file only)."""
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ValidationError(f"item {n}: expected an object with {', '.join(COCO_KEYS)}, got {_show(item)}")
        missing = [key for key in COCO_KEYS if key not in item]
        if missing:
            raise ValidationError(f"item {n}: missing {', '.join(missing)}")
        extra = sorted(set(item) - set(COCO_KEYS))
        if extra:
            raise ValidationError(f"item {n}: unexpected key {_show(extra[0])}")
        if type(item["image_id"]) is not str:
            raise ValidationError(f"item {n}: image_id must be a string such as 'test_000000', "
                                  f"got {_show(item['image_id'])}")
        if type(item["category_id"]) is not int:
            raise ValidationError(f"item {n}: category_id must be an integer class id, "
                                  f"got {_show(item['category_id'])}")
        if type(item["score"]) not in (int, float):
            raise ValidationError(f"item {n}: score must be a number, got {_show(item['score'])}")
        box = item["bbox"]
        if type(box) is not list or len(box) != 4 or any(type(v) not in (int, float) for v in box):
            raise ValidationError(f"item {n}: bbox must be a list of four numbers [x, y, w, h], got {_show(box)}")
    raise ValidationError("the JSON items are malformed")
