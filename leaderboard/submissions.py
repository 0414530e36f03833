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

Any file up to the size cap costs bounded time and memory (issue #12), because a rejected upload
costs the uploader little: the bytes are never held as a second copy of text, every line's field
count is checked on the bytes (numpy, a window at a time) before a parser sees them, the
classification parser reads at most one row more than there are test ids, detection CSV is read
by Arrow a block at a time into typed arrays, and COCO JSON is read a batch of items at a time.
At most VALIDATING_AT_ONCE uploads are validated at once per process; others wait a while, then
get ServerBusy.
"""
from __future__ import annotations

import codecs
import csv
import functools
import io
import itertools
import json
import json.scanner
import operator
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from leaderboard.errors import ServerBusy, ValidationError
from workers.prediction_format import (
    DETECTION_CSV_HEADER,
    MAX_GUESSES,
    classification_header,
)

MAX_BYTES = 50 * 1024 * 1024
SHOWN = 5  # how many missing ids an error lists
DETECTION_NUMBERS = ("score", "x1", "y1", "x2", "y2")
COCO_KEYS = ("image_id", "category_id", "bbox", "score")
FIRST_CLASS_ID = {"classification": 0, "detection": 1}
_INTEGERS = re.compile(r"[^,]*(,\s*[+-]?\d+\s*)+")  # a data row whose guesses are all integers

# Bounds (issue #12). The windows keep the working memory of a scan at a few MB whatever the file.
SCAN_WINDOW = 1 << 20  # bytes the line pre-scan and the UTF-8 check look at at once
CSV_BLOCK = 1 << 20  # bytes of detection CSV Arrow reads at once (more when one line is longer)
JSON_ITEM_CHARS = 1 << 16  # the longest COCO item read (a detection is about 100 characters)
JSON_WINDOW = 1 << 20  # characters of JSON handed to json's scanner at once (it takes no end position)
JSON_BATCH = 1000  # COCO items held as Python objects at once (few enough to die young: cheap for the GC), and ...
JSON_BATCH_CHARS = 1 << 20  # ... this much of their text (an item's objects can take 20x its text)
VALIDATING_AT_ONCE = 2  # uploads validated at once per process: 2 worst cases stay under 1 GB together
BUSY_WAIT_S = 10.0  # how long an upload waits for a turn before ServerBusy (a worst case takes about 2 s)
_VALIDATING = threading.BoundedSemaphore(VALIDATING_AT_ONCE)


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
    """Check an upload against a challenge (its task, sorted test ids, class names); raise ValidationError.

    ServerBusy (not a ValidationError: the file was not looked at) when other uploads hold every turn.
    """
    if task not in FIRST_CLASS_ID:
        raise ValidationError(f"challenges of task {task!r} take no submissions")
    _check_size(data, max_bytes)  # refusals that cost nothing need no turn
    with _validation_turn():
        if task == "classification":
            return parse_classification(data, ids, class_names, max_bytes)
        return parse_detection(data, filename, ids, class_names, max_bytes)


@contextmanager
def _validation_turn() -> Iterator[None]:
    """One of the VALIDATING_AT_ONCE turns; a bounded wait, so a crowd of uploads cannot queue without end."""
    if not _VALIDATING.acquire(timeout=BUSY_WAIT_S):
        raise ServerBusy(f"the server is busy validating other uploads ({VALIDATING_AT_ONCE} at a time); "
                         f"try again in {round(BUSY_WAIT_S)} seconds", round(BUSY_WAIT_S))
    try:
        yield
    finally:
        _VALIDATING.release()


# --- shared pieces -------------------------------------------------------------------------

def _show(value: Any, limit: int = 40) -> str:
    """The uploader's own value, quoted and cut short so an error line stays readable."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        value = value[:limit]  # repr of a megabyte-long cell would copy it all to show 40 characters
        return repr(value)[:limit - 3] + "..."
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_size(data: Any, max_bytes: int) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValidationError(f"expected the file's bytes, got {type(data).__name__}")
    size = memoryview(data).nbytes
    if size > max_bytes:
        raise ValidationError(f"the file has {size:,} bytes; the limit is {max_bytes:,}")


Body = bytes | memoryview  # the normalised file: a view into the upload where nothing had to change


def _body(data: bytes, max_bytes: int = MAX_BYTES) -> Body:
    """The file checked to be UTF-8, without its BOM, with '\\n' line ends and no trailing whitespace.

    Never decoded whole: a view into `data` unless line ends must be rewritten (one copy then).
    """
    _check_size(data, max_bytes)
    data = bytes(data)  # no copy for bytes, the usual case
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0  # spreadsheet programs write one
    _check_utf8(data, start)
    end = _end_of_text(data, start)
    if end == start:
        raise ValidationError("the file is empty")
    body = memoryview(data)[start:end]
    if data.find(b"\r", start, end) >= 0:
        # pandas' parser also ends a line at a bare '\r'; normalising keeps our line numbers equal to its.
        return re.sub(rb"\r\n?", b"\n", body)
    return body


def decode(data: bytes, max_bytes: int = MAX_BYTES) -> str:
    """The file as text with '\\n' line ends and no trailing blank lines."""
    return str(_body(data, max_bytes), "utf-8")


def _check_utf8(data: bytes, start: int) -> None:
    """Refuse bytes that are not UTF-8, naming the line; decoded a window at a time and thrown away."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    for at in range(start, len(data), SCAN_WINDOW):
        pending = len(decoder.getstate()[0])  # an unfinished character carried over from the last window
        try:
            decoder.decode(view[at:at + SCAN_WINDOW], final=at + SCAN_WINDOW >= len(data))
        except UnicodeDecodeError as exc:
            bad = at - pending + exc.start
            line = data.count(b"\n", start, bad) + 1
            raise ValidationError(f"line {line}: not UTF-8 (byte 0x{data[bad]:02x} at offset {bad - start})",
                                  line) from None


def _end_of_text(data: bytes, start: int) -> int:
    """Where the text ends once str.rstrip() would drop its trailing whitespace; read from the end a
    window at a time, so that the file is not copied to find out. `data[start:]` is valid UTF-8."""
    end = len(data)
    while end > start:
        at = max(start, end - SCAN_WINDOW)
        while at > start and 0x80 <= data[at] < 0xC0:  # back to the start of a character
            at -= 1
        kept = data[at:end].decode("utf-8").rstrip()
        if kept:
            return at + len(kept.encode("utf-8"))
        end = at
    return start


def _first_line(body: Body) -> str:
    line = re.match(rb"[^\n]*", body)  # always a match, if only an empty one
    return line.group().decode("utf-8") if line else ""


@dataclass(frozen=True)
class _Lines:
    count: int  # lines in the body, the header included
    cut: int  # where line `keep` ends (the body's end when it has no more lines)
    longest: int  # bytes in the longest line


def _scan_fields(body: Body, n_fields: int, what: str, exact: bool, keep: int | None = None) -> _Lines:
    """Check the lines' field counts on the bytes, before a parser sees them (a pandas or Arrow reader
    given a first row of 80,000 extra fields spends minutes or gigabytes on it).

    A line may have at most `n_fields` fields, with `exact` exactly that many and not be blank (all
    commas). QUOTE_NONE, as every reader here: a line has one field more than it has commas. With
    `keep`, only the first `keep` lines are looked at (all that will be parsed). numpy looks at
    SCAN_WINDOW bytes at a time: the positions of all ','s and '\\n's in order, so a line's commas
    are the separators between two '\\n's; the loop runs once per window, never once per line.
    """
    view = np.frombuffer(body, dtype=np.uint8)
    size = view.size
    lines, start, carried, cut, longest = 0, 0, 0, size, 0  # carried: commas of a line begun in an earlier window
    for at in range(0, size, SCAN_WINDOW):
        window = view[at:at + SCAN_WINDOW]
        separators = np.flatnonzero((window == ord(",")) | (window == ord("\n")))
        newlines = np.flatnonzero(window[separators] == ord("\n"))  # indices into separators
        ends = separators[newlines] + at
        if at + window.size == size:  # the body is stripped: its last line has no '\n'
            newlines, ends = np.append(newlines, separators.size), np.append(ends, size)
        if ends.size == 0:
            carried += separators.size
            continue
        if keep is not None and lines + ends.size >= keep:
            newlines, ends = newlines[:keep - lines], ends[:keep - lines]
            cut = int(ends[-1])
        commas = np.diff(newlines, prepend=-1) - 1
        commas[0] += carried
        lengths = ends - np.concatenate(([start], ends[:-1] + 1))
        blank = lengths == commas if exact else None  # nothing but commas
        bad = (commas + 1 != n_fields) | blank if exact else commas + 1 > n_fields
        if bad.any():
            _refuse_line(lines, bad, blank, commas, n_fields, what)
        longest = max(longest, int(lengths.max()))
        lines, start, carried = lines + ends.size, int(ends[-1]) + 1, separators.size - int(newlines[-1]) - 1
        if cut < size:
            break
    return _Lines(lines, cut, longest)


def _refuse_line(lines_before: int, bad: np.ndarray, blank: np.ndarray | None, commas: np.ndarray,
                 n_fields: int, what: str) -> None:
    j = int(np.argmax(bad))
    line = lines_before + j + 1
    if blank is not None and blank[j]:
        raise ValidationError(f"line {line} is blank", line)
    raise ValidationError(f"line {line}: {int(commas[j]) + 1} fields, but the header has {n_fields} ({what})", line)


def _read_rows(raw: bytes, n_fields: int, what: str, dtype: Any = object) -> pd.DataFrame:
    """The data rows (header skipped), one physical line per row; `what` describes a row for errors.

    `raw` has passed _scan_fields, so no row is wider than the header. A ValueError other than
    ValidationError means a cell did not fit `dtype`.
    """
    try:
        # QUOTE_NONE and skip_blank_lines=False: data row r is line r + 2 exactly, so errors can name it.
        with np.errstate(invalid="ignore"):  # 'inf' in an integer column: refused below, not warned about
            return pd.read_csv(io.BytesIO(raw), header=None, skiprows=1, names=range(n_fields), dtype=dtype,
                               na_filter=False, quoting=csv.QUOTE_NONE, skip_blank_lines=False,
                               skipinitialspace=True, engine="c", encoding="utf-8")
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


def _first_data_row(raw: bytes) -> str:
    start = raw.find(b"\n") + 1
    if not start:
        return ""
    end = raw.find(b"\n", start)
    return (raw[start:] if end < 0 else raw[start:end]).decode("utf-8")


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


def _image_positions(values: np.ndarray, index: pd.Index, place: Callable[[int], str],
                     line_of: Callable[[int], int] | None, upto: str | None = None) -> np.ndarray:
    """Positions of the uploaded image ids in `index` (the challenge's sorted ids); unknown ids are rejected.

    `upto`: where `values` end when they are only part of the file (the error counts the unknown ids in them).
    """
    positions = index.get_indexer(values)
    unknown = np.flatnonzero(positions < 0)
    if unknown.size:
        row = int(unknown[0])
        example = index[0] if len(index) else None
        raise ValidationError(f"{place(row)}: {_image_problem(values[row], example, unknown.size - 1, upto)}",
                              line_of(row) if line_of else None)
    return positions


def _image_problem(value: str, example: str | None, more: int, upto: str | None) -> str:
    """What is wrong with an image_id; `example`: a test id; `more`: other unknown ids (up to `upto`)."""
    problem = "image_id is empty" if value == "" else f"unknown image_id {_show(value)}"
    like = f"; test ids look like {str(example)!r}" if example is not None else ""
    others = f" (and {more} more unknown ids{' up to ' + upto if upto else ''})" if more else ""
    return f"{problem}{like}{others}"


def _id_index(ids: np.ndarray) -> pd.Index:
    return pd.Index(ids, dtype=object)


def _row_place(row: int) -> str:
    return f"line {_line(row)}"


# --- classification ------------------------------------------------------------------------

def parse_classification(data: bytes, ids: np.ndarray, class_names: list[str],
                         max_bytes: int = MAX_BYTES) -> Classifications:
    fast = _fast_classification(data, ids, len(class_names), max_bytes)
    if fast is not None:
        return fast
    return _checked_classification(data, ids, class_names, max_bytes)


def _checked_classification(data: bytes, ids: np.ndarray, class_names: list[str],
                            max_bytes: int = MAX_BYTES) -> Classifications:
    """The pandas path: reads any file, and words the first problem of one it refuses.

    It parses at most one row more than there are test ids: those rows already hold an unknown or a
    repeated id (or an earlier problem), which the checks below name, so a longer file is refused
    without its rest being parsed (40 MB of ',\\n' would be 20 million rows of Python strings).
    """
    body = _body(data, max_bytes)
    k = _classification_header(body)
    what = _guesses_what(k)
    lines = _scan_fields(body, k + 1, what, exact=False, keep=len(ids) + 2)
    image_ids, guesses = _read_guesses(bytes(body[:lines.cut]), k, class_names, what)
    if len(image_ids) == 0:
        raise ValidationError(f"the file has a header but no predictions; expected one row for each of the "
                              f"{len(ids)} test images")
    upto = f"line {lines.count}" if lines.cut < len(body) else None  # rows past it were not read
    positions = _image_positions(image_ids, _id_index(ids), _row_place, _line, upto)
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


def _classification_header(body: Body) -> int:
    """k, the guesses per row, from a header image_id,pred_1,...,pred_k (any case, spaces around names)."""
    first = _first_line(body)
    k = first.count(",")
    # Only the first fields are compared: a header of a million commas must not become a million strings.
    fields = tuple(field.strip().lower() for field in first.split(",", MAX_GUESSES + 1)[:MAX_GUESSES + 1])
    if k < 1 or fields != classification_header(min(k, MAX_GUESSES)):
        raise ValidationError(f"line 1: the header must be image_id,pred_1,...,pred_k with 1 <= k <= {MAX_GUESSES} "
                              f"guesses, best first; got {_show(first, 60)}", 1)
    if k > MAX_GUESSES:
        raise ValidationError(f"line 1: {k} guesses per image; at most five are allowed (pred_1..pred_5)", 1)
    return k


def _guesses_what(k: int) -> str:
    """A data row, as a field-count error describes it."""
    return f"image_id and {k} guess{'es' if k > 1 else ''}" + ("; at most five guesses are allowed"
                                                              if k == MAX_GUESSES else "")


def _read_guesses(raw: bytes, k: int, class_names: list[str], what: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows' image ids (strings) and guesses (class ids, N x k)."""
    n_classes = len(class_names)
    try:
        # The common case, class ids: the C parser reads the integers itself, no Python per cell.
        # A first row of class names skips the attempt, which would only fail after a full parse.
        if not _INTEGERS.fullmatch(_first_data_row(raw)):
            raise ValueError("not class ids")
        frame = _read_rows(raw, k + 1, what, {0: object, **{j: np.int64 for j in range(1, k + 1)}})
        guesses = frame.iloc[:, 1:].to_numpy(dtype=np.int64)
    except ValidationError:
        raise
    except (ValueError, OverflowError):
        # Some cell is not an integer: class names, or an error to word. Read everything as text.
        frame = _read_rows(raw, k + 1, what)
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
        fields = tuple(field.strip().lower() for field in data[:min(ends)].decode("utf-8").split(","))
    except UnicodeDecodeError:
        return None
    k = len(fields) - 1
    if not 1 <= k <= MAX_GUESSES or fields != classification_header(k):
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
    if k is None or _more_line_ends_than(data, len(ids) + 1):
        return None  # more lines than a header and a row per id: not clean, and Arrow would read them all
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


def _more_line_ends_than(data: bytes, limit: int) -> bool:
    """Whether `data` has more than `limit` '\\n's, or '\\r's (numpy counts a window at a time: cheaper than
    bytes.count, and it stops as soon as the answer is known)."""
    view = np.frombuffer(data, dtype=np.uint8)
    newlines = returns = 0
    for at in range(0, view.size, SCAN_WINDOW):
        window = view[at:at + SCAN_WINDOW]
        newlines += np.count_nonzero(window == ord("\n"))
        returns += np.count_nonzero(window == ord("\r"))
        if newlines > limit or returns > limit:
            return True
    return False


def _reject_duplicate_rows(positions: np.ndarray, image_ids: np.ndarray) -> None:
    duplicated = pd.Index(positions).duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        first = int(np.flatnonzero(positions == positions[row])[0])
        raise ValidationError(f"line {_line(row)}: duplicate image_id {_show(image_ids[row])} "
                              f"(first on line {_line(first)})", _line(row))


# --- detection -----------------------------------------------------------------------------

_JSON_START = re.compile(rb"\s*\[")


def parse_detection(data: bytes, filename: str, ids: np.ndarray, class_names: list[str],
                    max_bytes: int = MAX_BYTES) -> Detections:
    body = _body(data, max_bytes)
    if filename.lower().endswith(".json") or _JSON_START.match(body):
        fast = _fast_coco_json(body, ids, len(class_names))
        return fast if fast is not None else _parse_coco_json(str(body, "utf-8"), ids, len(class_names))
    return _parse_detection_csv(body, ids, class_names)


def _parse_detection_csv(body: Body, ids: np.ndarray, class_names: list[str]) -> Detections:
    """Arrow reads the rows a block at a time as strings; each block is checked and written, typed, into
    arrays sized by the pre-scan, so no cell ever becomes a Python object (as pandas' object columns did:
    6x-60x the file)."""
    first = _first_line(body)
    fields = tuple(field.strip().lower() for field in first.split(",", len(DETECTION_CSV_HEADER)))
    if fields != DETECTION_CSV_HEADER:
        raise ValidationError(f"line 1: the header must be {','.join(DETECTION_CSV_HEADER)} "
                              f"(or upload a COCO results .json); got {_show(first, 60)}", 1)
    lines = _scan_fields(body, len(DETECTION_CSV_HEADER), ",".join(DETECTION_CSV_HEADER), exact=True)
    if lines.count == 1:
        return _no_detections()  # a detector that finds nothing has a score too: zero
    out = _no_detections(lines.count - 1)
    check = _DetectionBlock(ids, class_names)
    row = 0
    for block in _csv_blocks(body, lines.longest):
        check(block, row, out)
        row += block.num_rows
    if row != out.n_rows:  # the pre-scan and Arrow split lines alike; this guards that, cheaply
        raise ValidationError(f"not a readable CSV file: {row:,} rows read of {out.n_rows:,} lines")
    return out


def _csv_blocks(body: Body, longest: int) -> Iterator[pa.RecordBatch]:
    """The data rows as Arrow strings, CSV_BLOCK bytes at a time (a block holds whole lines: at least the longest)."""
    names = list(DETECTION_CSV_HEADER)
    try:
        yield from pa_csv.open_csv(
            pa.BufferReader(pa.py_buffer(body)),
            read_options=pa_csv.ReadOptions(skip_rows=1, column_names=names, block_size=max(CSV_BLOCK, longest + 2),
                                            use_threads=False),  # threads read ahead: memory, and work after a refusal
            parse_options=pa_csv.ParseOptions(quote_char=False, newlines_in_values=False, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(column_types={name: pa.string() for name in names}, null_values=[],
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowInvalid as exc:
        raise ValidationError(f"not a readable CSV file: {str(exc).strip()}") from None


class _DetectionBlock:
    """Checks one block of detection CSV rows and writes them into the output; refuses the block's
    first bad line (on one line, the checks' order: blank, image_id, class_id, numbers, box)."""

    def __init__(self, ids: np.ndarray, class_names: list[str]):
        self.id_set, self.example = _arrow_ids(ids), (ids[0] if len(ids) else None)
        lookup = class_lookup(class_names, FIRST_CLASS_ID["detection"])
        self.class_texts = pa.array(list(lookup), type=pa.string())
        self.class_ids = np.fromiter(lookup.values(), dtype=np.int64, count=len(lookup))
        self.n_classes = len(class_names)

    def __call__(self, block: pa.RecordBatch, row0: int, out: Detections) -> None:
        # Leading spaces go, as pandas' skipinitialspace took them; a number may have spaces either side.
        cells = [pc.utf8_ltrim(block.column(j), characters=" ") for j in range(2)]
        numbers = [pc.utf8_trim(block.column(j), characters=" \t") for j in range(2, len(DETECTION_CSV_HEADER))]
        problems: list[tuple[int, str]] = []  # (row in the block, what is wrong after "line N")
        _note(problems, _all([pc.equal(pc.binary_length(c), 0) for c in cells + numbers]), lambda r: " is blank")
        positions = pc.index_in(cells[0], value_set=self.id_set)
        unknown = positions.is_null().to_numpy(zero_copy_only=False)
        _note(problems, unknown, lambda r: ": " + _image_problem(cells[0][r].as_py(), self.example,
                                                                int(unknown.sum()) - 1,
                                                                f"line {_line(row0 + block.num_rows - 1)}"))
        codes = pc.index_in(cells[1], value_set=self.class_texts)
        _note(problems, codes.is_null().to_numpy(zero_copy_only=False),
              lambda r: ", class_id: " + _class_problem(cells[1][r].as_py(), FIRST_CLASS_ID["detection"],
                                                        self.n_classes))
        # Rows past the first bad one need no more checks: only the first is named.
        checked = min((row for row, _ in problems), default=block.num_rows)
        values = np.column_stack([self._numbers(problems, name, column.slice(0, checked))
                                  for name, column in zip(DETECTION_NUMBERS, numbers)])
        boxes = values[:, 1:]
        for low, high in ((0, 2), (1, 3)):
            _note(problems, boxes[:, high] <= boxes[:, low], functools.partial(_box_problem, boxes, low, high))
        if problems:
            row, problem = min(problems, key=lambda found: found[0])  # ties: the first check's
            line = _line(row0 + row)
            raise ValidationError(f"line {line}{problem}", line)
        rows = slice(row0, row0 + block.num_rows)
        out.image_index[rows] = positions.to_numpy()
        out.class_id[rows] = self.class_ids[codes.to_numpy()]
        out.score[rows] = values[:, 0]
        out.boxes[rows] = boxes

    @staticmethod
    def _numbers(problems: list[tuple[int, str]], name: str, cells: pa.Array) -> np.ndarray:
        """The column as doubles (NaN from its first unreadable cell on); notes its first bad cell."""
        try:
            values = pc.cast(cells, pa.float64()).to_numpy()
            bad = len(cells)
        except pa.ArrowInvalid:
            bad = _first_unparsed(cells)
            values = np.full(len(cells), np.nan)
            values[:bad] = pc.cast(cells.slice(0, bad), pa.float64()).to_numpy()
            problems.append((bad, f", {name}: {_number_problem(cells[bad].as_py())}"))
        _note(problems, ~np.isfinite(values[:bad]), lambda r: f", {name}: {_number_problem(cells[r].as_py())}")
        return values


def _box_problem(boxes: np.ndarray, low: int, high: int, row: int) -> str:
    lo_name, hi_name = DETECTION_CSV_HEADER[3 + low], DETECTION_CSV_HEADER[3 + high]
    return f": {hi_name} ({boxes[row, high]:g}) must be greater than {lo_name} ({boxes[row, low]:g})"


def _note(problems: list[tuple[int, str]], bad: Any, problem: Callable[[int], str]) -> None:
    """Add the first row of `bad` (a bool mask) and what is wrong with it, if any row is bad."""
    hit = np.flatnonzero(np.asarray(bad))
    if hit.size:
        problems.append((int(hit[0]), problem(int(hit[0]))))


def _all(masks: list[pa.Array]) -> np.ndarray:
    result = masks[0]
    for mask in masks[1:]:
        result = pc.and_(result, mask)
    return result.to_numpy(zero_copy_only=False)


def _first_unparsed(cells: pa.Array) -> int:
    """The first cell Arrow cannot cast to a double (there is one). A failed cast names no row: try
    prefixes of 1, 2, 4, ... cells until one fails, then halve that last step; work grows with the row."""
    size = 1
    while size < len(cells) and _casts(cells.slice(0, size)):
        size *= 2
    lo, hi = size // 2, min(size, len(cells))  # the first bad cell is in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _casts(cells.slice(lo, mid - lo)):
            lo = mid
        else:
            hi = mid
    return lo


def _casts(cells: pa.Array) -> bool:
    try:
        pc.cast(cells, pa.float64())
    except pa.ArrowInvalid:
        return False
    return True


def _no_detections(n: int = 0) -> Detections:
    """n detections to be filled in (np.empty: memory is only taken as rows are written)."""
    return Detections(np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n), np.empty((n, 4)), n)


def _number_problem(value: str) -> str:
    if value.strip() == "":
        return "empty"
    try:
        float(value)
    except ValueError:
        return f"{_show(value)} is not a number"
    return f"{_show(value)} is not a finite number"


# COCO JSON: json's own scanner reads one item of the top-level list per call, so that only a batch of
# items is ever held as Python objects (json.loads of a 47 MB file holds 470,000 dicts at once: 6x the file).

_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_JSON_NEXT = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")  # what may follow an item of the list
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)  # possessive: no backtracking stack


def _skip_space(text: str, at: int = 0) -> int:
    """Where JSON whitespace from `at` ends."""
    space = _JSON_SPACE.match(text, at)
    return space.end() if space else at


class _NotANumber(Exception):
    """NaN or Infinity: Python's json reads them, JSON has no such numbers."""


def _refuse_constant(name: str) -> float:
    raise _NotANumber(name)


class _CocoDetection(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One item of a clean COCO results file, as the fast path decodes it (typed: no bool for a number)."""

    image_id: str
    category_id: int
    bbox: tuple[float, float, float, float]
    score: float


_COCO_DECODER = msgspec.json.Decoder(list[_CocoDetection])


def _fast_coco_json(body: Any, ids: np.ndarray, n_classes: int) -> Detections | None:
    """A clean COCO results file, decoded by msgspec straight into typed structs; None for anything else.

    About 2x json.loads and no dict per item, which keeps a file at the size cap within the time target.
    Whatever it declines, the windowed reader below reads again, so every error is worded in one place.
    """
    try:
        items = _COCO_DECODER.decode(body)
    except msgspec.DecodeError:  # malformed, mistyped, a missing or an unknown key: the slow path words it
        return None
    n = len(items)
    if n == 0:
        return _no_detections()
    index = dict(zip(ids.tolist(), range(len(ids))))
    positions = np.fromiter(map(index.get, (d.image_id for d in items), itertools.repeat(-1)), np.int64, count=n)
    try:
        classes = np.fromiter((d.category_id for d in items), np.int64, count=n)
    except OverflowError:  # msgspec takes integers up to 2**64 - 1
        return None
    scores = np.fromiter((d.score for d in items), np.float64, count=n)
    boxes = np.fromiter(itertools.chain.from_iterable(d.bbox for d in items), np.float64, count=4 * n).reshape(n, 4)
    low = FIRST_CLASS_ID["detection"]
    if ((positions < 0).any() or ((classes < low) | (classes >= low + n_classes)).any()
            or not np.isfinite(scores).all() or not np.isfinite(boxes).all() or (boxes[:, 2:] <= 0).any()):
        return None
    corners = np.column_stack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]])
    return Detections(positions, classes, scores, corners, n)


def _parse_coco_json(text: str, ids: np.ndarray, n_classes: int) -> Detections:
    index = dict(zip(ids.tolist(), range(len(ids))))  # id -> position; map(index.get, ...) runs in C
    parts, done = [], 0
    for items in _json_batches(text):
        parts.append(_coco_batch(items, done, index, n_classes))
        done += len(items)
    if not parts:
        return _no_detections()
    image_index, classes, scores, boxes = (np.concatenate(column) for column in zip(*parts))
    return Detections(image_index, classes, scores, boxes, done)


def _json_batches(text: str) -> Iterator[list[Any]]:
    """The items of the file's top-level list in order, in batches of JSON_BATCH items or JSON_BATCH_CHARS.

    The scanner is handed a window of the text that reaches at least JSON_ITEM_CHARS past the item,
    so that an item longer than that is refused before it can become millions of objects.
    """
    # json's own (C) scanner: one value per call. typeshed types make_scanner as the class it is, not a factory.
    scan = json.scanner.make_scanner(json.JSONDecoder(parse_constant=_refuse_constant))  # type: ignore[arg-type]
    at = _skip_space(text)
    if not text.startswith("[", at):
        _refuse_top_level(text, at)
    at = _skip_space(text, at + 1)
    closed = text.startswith("]", at)
    at += closed
    base, window = at, ""  # window: text[base:base + JSON_WINDOW]
    batch: list[Any] = []
    done, batch_at = 0, at  # items in earlier batches; where this batch began
    while not closed:
        if base + len(window) < min(len(text), at + JSON_ITEM_CHARS):
            base, window = at, text[at:at + JSON_WINDOW]
        item, end = _scan_item(scan, text, window, base, at, done + len(batch))
        batch.append(item)
        after = _JSON_NEXT.match(text, end)
        if after is None:
            raise _json_error("Expecting ',' delimiter", text, _skip_space(text, end))
        at, closed = after.end(), after.group(1) == "]"
        if len(batch) == JSON_BATCH or at - batch_at >= JSON_BATCH_CHARS:
            yield batch
            done, batch, batch_at = done + len(batch), [], at
    at = _skip_space(text, at)
    if at < len(text):
        raise _json_error("Extra data", text, at)
    if batch:
        yield batch


def _scan_item(scan: Callable[[str, int], tuple[Any, int]], text: str, window: str, base: int, at: int,
               n: int) -> tuple[Any, int]:
    """Item `n` (from 0), which starts at `at`, and where it ends (in `text`)."""
    try:
        item, end = scan(window, at - base)
        return item, base + end
    except StopIteration as stop:
        message, pos = "Expecting value", stop.value
    except json.JSONDecodeError as exc:
        message, pos = exc.msg, exc.pos
    except _NotANumber as exc:
        raise ValidationError(f"item {n + 1}: {exc} is not a number JSON allows") from None
    except RecursionError:
        raise ValidationError(f"item {n + 1}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise ValidationError(f"item {n + 1}: not valid JSON ({exc})") from None
    if base + len(window) < len(text) and _cut_short(text, window, base, message, pos):
        line = text.count("\n", 0, at) + 1
        raise ValidationError(f"line {line}: item {n + 1} is longer than {JSON_ITEM_CHARS:,} characters; "
                              f"a detection is one short object", line)
    raise _json_error(message, text, base + pos)


def _cut_short(text: str, window: str, base: int, message: str, pos: int) -> bool:
    """Whether json's error came from the window's end rather than from the item: it was at that end,
    or it is a string that does end, past the window."""
    if message.startswith("Unterminated string"):
        return _JSON_STRING.match(text, base + pos) is not None
    return pos >= len(window) - 16  # a truncated number, literal or escape is at most this far back


def _json_error(message: str, text: str, at: int) -> ValidationError:
    where = json.JSONDecodeError(message, text, at)  # counts the line and column as json.loads would
    return ValidationError(f"line {where.lineno}, column {where.colno}: not valid JSON ({message})", where.lineno)


def _refuse_top_level(text: str, at: int) -> NoReturn:
    if text[at:at + 1] in ("{", '"', "-", "t", "f", "n") or text[at:at + 1].isdigit():
        raise ValidationError("the JSON must be a list of detections "
                              '[{"image_id": ..., "category_id": ..., "bbox": [x, y, w, h], "score": ...}, ...]')
    raise _json_error("Expecting value", text, at)


def _coco_batch(items: list[Any], first: int, index: dict[str, int], n_classes: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image positions, class ids, scores and x1, y1, x2, y2 boxes of items `first`.. of the list (from 0)."""
    columns = _coco_columns(items)
    if columns is None:
        _explain_bad_item(items, first)
    n = len(items)
    try:
        scores = np.fromiter(columns["score"], np.float64, count=n)
        boxes = np.fromiter(itertools.chain.from_iterable(columns["bbox"]), np.float64, count=4 * n).reshape(n, 4)
    except OverflowError:  # an integer beyond a double's range
        row = next(n for n, item in enumerate(items, first + 1)
                   if any(abs(v) > 1e308 for v in (item["score"], *item["bbox"])))
        raise ValidationError(f"item {row}: a number too large for a score or a box coordinate") from None
    positions = np.fromiter(map(index.get, columns["image_id"], itertools.repeat(-1)), np.int64, count=n)
    unknown = np.flatnonzero(positions < 0)
    if unknown.size:
        row = int(unknown[0])
        example = next(iter(index), None)  # the first test id: the dict keeps the ids' order
        raise ValidationError(f"item {first + row + 1}: " + _image_problem(columns["image_id"][row], example,
                                                                          unknown.size - 1, f"item {first + n}"))
    classes = _category_ids(columns["category_id"], first, n_classes)
    bad_cells = np.argwhere(~np.isfinite(np.column_stack([scores, boxes])))
    if bad_cells.size:  # a JSON number too large for a double parses as inf
        row, col = map(int, bad_cells[0])
        raise ValidationError(f"item {first + row + 1}: {('score', 'bbox x', 'bbox y', 'bbox w', 'bbox h')[col]} "
                              f"is not a finite number")
    for col, name in ((2, "w"), (3, "h")):
        bad = np.flatnonzero(boxes[:, col] <= 0)
        if bad.size:
            raise ValidationError(f"item {first + int(bad[0]) + 1}: bbox {name} must be positive, "
                                  f"got {boxes[bad[0], col]:g}")
    corners = np.column_stack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]])
    return positions, classes, scores, corners


def _category_ids(values: list[int], first: int, n_classes: int) -> np.ndarray:
    low, high = FIRST_CLASS_ID["detection"], FIRST_CLASS_ID["detection"] + n_classes
    try:
        classes = np.fromiter(values, np.int64, count=len(values))
        bad = np.flatnonzero((classes < low) | (classes >= high))
        row = int(bad[0]) if bad.size else None
    except OverflowError:  # beyond int64: certainly out of range; find it the slow way
        row = next(n for n, value in enumerate(values) if not low <= value < high)
    if row is not None:
        raise ValidationError(f"item {first + row + 1}: category_id {_show(values[row])} is out of range "
                              f"{low}..{high - 1}")
    return classes


def _coco_columns(items: list[Any]) -> dict[str, list[Any]] | None:
    """The items' values by key when every item is {image_id: str, category_id: int, bbox: [4 numbers],
    score: number}; else None.

    Checked with map() over whole columns, not a loop per item: set(map(type, ...)) runs in C.
    """
    numbers = {int, float}
    try:  # a list or a string item fails the lookups with TypeError; four keys found, and four in all
        columns = {key: list(map(operator.itemgetter(key), items)) for key in COCO_KEYS}
        if set(map(len, items)) != {len(COCO_KEYS)}:
            return None
    except (KeyError, TypeError):
        return None
    boxes = columns["bbox"]
    if (set(map(type, columns["image_id"])) == {str} and set(map(type, columns["category_id"])) == {int}
            and set(map(type, columns["score"])) <= numbers and set(map(type, boxes)) == {list}
            and set(map(len, boxes)) == {4} and set(map(type, itertools.chain.from_iterable(boxes))) <= numbers):
        return columns
    return None


def _explain_bad_item(items: list[Any], first: int = 0) -> NoReturn:
    """Raise an error naming the first malformed JSON item (the slow path, for a rejected file only)."""
    for n, item in enumerate(items, first + 1):
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
