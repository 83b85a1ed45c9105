"""What "the same results" means for files that hold computed numbers.

Pinned kernels (see kernels.py) make every x86-64 CPU produce the same bytes, so on x86-64 the
comparison below finds nothing. Its tolerance is set at what a reviewer can see: half a unit in
the fourth decimal, the precision of every table in the PR report and the model card. Words,
labels, keys, list lengths and integers (counts) must match exactly. Inputs (code, params,
data) never get a tolerance: see lockcheck.py.

Why not a tolerance wide enough for unpinned kernels instead: measured on the default data,
AVX-512 against AVX2 kernels moved the tree families' CV macro-F1 by up to 4e-3, the linear ones'
by 4e-4 and hundreds of plotted points by more than 1e-3. Last-bit differences in the features
change which splits a tree takes; a tolerance that absorbs that would also hide real changes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TypeGuard

ABS_TOLERANCE = 5e-5

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Difference:
    """One value that differs beyond the tolerance (or a structure that differs at all)."""

    file: str
    where: str
    committed: object
    produced: object

    def __str__(self) -> str:
        location = f"{self.file} {self.where}".strip()
        return f"{location}: {self.committed!r} committed, {self.produced!r} produced"


def numbers_close(a: float | int, b: float | int, tolerance: float = ABS_TOLERANCE) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b  # counts: one flipped prediction is a real difference
    return math.isclose(a, b, rel_tol=0.0, abs_tol=tolerance)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare_json(committed: object, produced: object, file: str = "", where: str = "",
                 tolerance: float = ABS_TOLERANCE) -> list[Difference]:
    """Differences between two parsed JSON documents, keyed by their path (``a.b[3].c``)."""
    if _is_number(committed) and _is_number(produced):
        if numbers_close(committed, produced, tolerance):
            return []
        return [Difference(file, where, committed, produced)]
    if isinstance(committed, dict) and isinstance(produced, dict):
        if list(committed) != list(produced):
            return [Difference(file, f"{where} keys".strip(), list(committed), list(produced))]
        return [d for key in committed
                for d in compare_json(committed[key], produced[key], file,
                                      f"{where}.{key}" if where else str(key), tolerance)]
    if isinstance(committed, list) and isinstance(produced, list):
        if len(committed) != len(produced):
            return [Difference(file, f"{where} length".strip(), len(committed), len(produced))]
        return [d for i, (a, b) in enumerate(zip(committed, produced, strict=True))
                for d in compare_json(a, b, file, f"{where}[{i}]", tolerance)]
    if committed != produced or type(committed) is not type(produced):
        return [Difference(file, where, committed, produced)]
    return []


def _parse_number(text: str) -> float | int | None:
    if not _NUMBER.fullmatch(text.strip()):
        return None
    value = float(text)
    return int(value) if re.fullmatch(r"[-+]?\d+", text.strip()) else value


def _csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def compare_csv(committed: str, produced: str, file: str = "",
                tolerance: float = ABS_TOLERANCE) -> list[Difference]:
    """Row by row after sorting on the text cells: rows ranked by a probability may swap
    places when two probabilities are within the tolerance of each other."""
    old, new = _csv_rows(committed), _csv_rows(produced)
    if not old or not new or old[0] != new[0]:
        return [Difference(file, "header", old[0] if old else None, new[0] if new else None)]
    if len(old) != len(new):
        return [Difference(file, "rows", len(old) - 1, len(new) - 1)]

    def text_key(row: list[str]) -> list[str]:
        return [cell for cell in row if not isinstance(_parse_number(cell), float)]

    differences = []
    for i, (a, b) in enumerate(zip(sorted(old[1:], key=text_key), sorted(new[1:], key=text_key), strict=False)):
        if len(a) != len(b):
            differences.append(Difference(file, f"row {i + 1} cells", len(a), len(b)))
            continue
        for column, x, y in zip(old[0], a, b, strict=False):
            nx, ny = _parse_number(x), _parse_number(y)
            same = numbers_close(nx, ny, tolerance) if nx is not None and ny is not None else x == y
            if not same:
                differences.append(Difference(file, f"row with {text_key(a)[:3]} column {column!r}", x, y))
    return differences


def compare_words_and_numbers(committed: str, produced: str, file: str = "",
                              tolerance: float = ABS_TOLERANCE) -> list[Difference]:
    """Prose with numbers in it (the model card): the words must match, the numbers within the
    tolerance of their printed precision."""
    old_words, new_words = _NUMBER.split(committed), _NUMBER.split(produced)
    if old_words != new_words:
        for line_no, (a, b) in enumerate(zip(committed.splitlines(), produced.splitlines(), strict=False), 1):
            if _NUMBER.split(a) != _NUMBER.split(b):
                return [Difference(file, f"line {line_no}", a, b)]
        return [Difference(file, "lines", len(committed.splitlines()), len(produced.splitlines()))]
    differences = []
    for a, b in zip(_NUMBER.findall(committed), _NUMBER.findall(produced), strict=False):
        # A printed number is rounded: allow the tolerance plus half its last printed digit.
        decimals = len(a.split(".")[1]) if "." in a and "e" not in a.lower() else 0
        slack = tolerance + (0.5 * 10 ** -decimals if decimals else 0)
        if a != b and not math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=slack):
            differences.append(Difference(file, f"number near {a!r}", a, b))
    return differences


def compare_files(path: str, committed: str, produced: str,
                  tolerance: float = ABS_TOLERANCE) -> list[Difference]:
    """Compare two versions of a result file by its kind (JSON, CSV, anything else as text)."""
    suffix = PurePosixPath(path).suffix
    if suffix == ".json":
        try:
            old, new = json.loads(committed), json.loads(produced)
        except json.JSONDecodeError as exc:
            return [Difference(path, "JSON", "valid JSON", f"unreadable: {exc}")]
        return compare_json(old, new, path, tolerance=tolerance)
    if suffix == ".csv":
        return compare_csv(committed, produced, path, tolerance)
    return compare_words_and_numbers(committed, produced, path, tolerance)
