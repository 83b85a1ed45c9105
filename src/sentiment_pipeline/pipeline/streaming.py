"""Building blocks for stages that stream data larger than memory (``chunk_rows`` set).

The streamed stages hold per row only a few fixed-size numbers (a 128-bit key, a label code,
lengths); texts pass through in chunks. They write the same files as the in-memory path:

- duplicates are found with 128-bit keys (two SipHash-2-4 hashes with fixed keys, so the same
  text gets the same key on every machine); first occurrence wins, as in ``DataFrame.duplicated``;
- rows are written in the in-memory path's order by an external bucket sort (``OrderedCsvWriter``);
- sparse matrices go to ``.npz`` files array by array (``CsrNpzWriter``), never whole in memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from sentiment_pipeline.core.files import CSV_OPTIONS, atomic_path, npz_member

# Two independent 16-byte SipHash keys: a 128-bit key makes an accidental collision among 10^9
# rows about 10^-21 likely (a single 64-bit hash: 3% at 10^9 rows, 3e-6 at 10^7).
_HASH_KEYS = ("sentiment-pipe-1", "sentiment-pipe-2")


def text_keys(*columns: pd.Series) -> np.ndarray:
    """A (rows, 2) uint64 key per row of the given columns, equal exactly when all are equal."""
    frame = pd.concat([c.reset_index(drop=True) for c in columns], axis=1, ignore_index=True)
    return np.column_stack([pd.util.hash_pandas_object(frame, index=False, hash_key=key).to_numpy()
                            for key in _HASH_KEYS])


def first_occurrence(keys: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows whose key was not seen in an earlier row."""
    mask = np.zeros(len(keys), dtype=bool)
    if not len(keys):
        return mask
    order = np.lexsort((keys[:, 1], keys[:, 0]))  # stable: equal keys keep their row order
    ordered = keys[order]
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    mask[order[starts]] = True
    return mask


def groups_with_several_labels(keys: np.ndarray, labels: np.ndarray) -> int:
    """How many distinct keys occur with more than one label."""
    if not len(keys):
        return 0
    order = np.lexsort((labels, keys[:, 1], keys[:, 0]))
    k, lab = keys[order], labels[order]
    same_key = np.zeros(len(k), dtype=bool)
    same_key[1:] = (k[1:] == k[:-1]).all(axis=1)
    label_changes = same_key & np.r_[False, lab[1:] != lab[:-1]]
    # a group is counted once, at the first place its label changes
    group_id = np.cumsum(~same_key)
    return len(np.unique(group_id[label_changes]))


def groups_varying(keys: np.ndarray, *columns: np.ndarray) -> int:
    """How many distinct keys occur with more than one value in every one of ``columns``
    (integer codes, one per row)."""
    if not len(keys):
        return 0
    order = np.lexsort((keys[:, 1], keys[:, 0]))
    k = keys[order]
    starts = np.flatnonzero(np.r_[True, (k[1:] != k[:-1]).any(axis=1)])
    varies = np.ones(len(starts), dtype=bool)
    for column in columns:
        ordered = column[order]
        varies &= np.minimum.reduceat(ordered, starts) != np.maximum.reduceat(ordered, starts)
    return int(varies.sum())


class LabelCodes:
    """Small integer codes for labels as they are met, renumbered by sorted label at the end."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def encode(self, labels: pd.Series) -> np.ndarray:
        codes, uniques = pd.factorize(labels, sort=False)
        if (codes < 0).any():
            raise ValueError("labels: missing values cannot be encoded")  # validated upstream
        mapping = np.array([self.index.setdefault(str(u), len(self.index)) for u in uniques], dtype=np.int32)
        return mapping[codes] if len(codes) else np.zeros(0, dtype=np.int32)

    def sorted_labels(self) -> list[str]:
        return sorted(self.index)

    def to_sorted(self, codes: np.ndarray) -> np.ndarray:
        """Codes renumbered so that code i is ``sorted_labels()[i]``."""
        rank = {label: i for i, label in enumerate(self.sorted_labels())}
        remap = np.empty(len(self.index), dtype=np.int32)
        for label, code in self.index.items():
            remap[code] = rank[label]
        return remap[codes]


def parallel_map(function: Callable, arguments: Iterable[tuple], n_jobs: int) -> Iterator:
    """``function(*args)`` for each tuple, results in order, computed by ``n_jobs`` worker
    processes with at most two tasks per worker in flight. joblib's generator output keeps
    dispatching (and reading input) ahead of a slow consumer, so memory would not stay bounded;
    here a sliding window on loky's reusable executor (the one joblib runs on) keeps the
    workers busy while the caller writes results."""
    from collections import deque

    from joblib import effective_n_jobs
    from joblib.externals.loky import get_reusable_executor

    workers = effective_n_jobs(n_jobs)
    if workers == 1:
        yield from (function(*args) for args in arguments)
        return
    executor = get_reusable_executor(max_workers=workers)
    pending: deque = deque()
    try:
        for args in arguments:
            pending.append(executor.submit(function, *args))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def counts_by_label(codes: np.ndarray, labels: list[str]) -> dict[str, int]:
    """{label: rows} in sorted label order, labels without rows left out (as value_counts)."""
    counts = np.bincount(codes, minlength=len(labels))
    return {label: int(n) for label, n in zip(labels, counts, strict=True) if n}


# ------------------------------------------------------------------ CSV output
def csv_lines(frame: pd.DataFrame, header: bool) -> str:
    """``frame`` as :func:`files.write_csv` writes it, with or without the header line."""
    return frame.to_csv(header=header, **CSV_OPTIONS)


def write_csv_chunks(chunks: Iterable[pd.DataFrame], target: Path, columns: list[str]) -> int:
    """Write chunks of one table to ``target`` atomically, byte for byte as ``write_csv`` would
    write them concatenated; return the number of rows."""
    rows = 0
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
        header = True
        for chunk in chunks:
            out.write(csv_lines(chunk[columns], header))
            header, rows = False, rows + len(chunk)
        if header:
            out.write(csv_lines(pd.DataFrame(columns=columns), True))
    return rows


def _string_batch(frame: pd.DataFrame, columns: list[str], schema: pa.Schema, extra: list | None = None):
    """The frame's text columns (plus ``extra`` arrays) as one Arrow record batch."""
    arrays = [pa.array(frame[c].to_numpy(object), pa.string()) for c in columns]
    return pa.RecordBatch.from_arrays(arrays + (extra or []), schema=schema)


class OrderedCsvWriter:
    """Rows arrive in any order with their final position; ``write`` emits them in position
    order. An external bucket sort: positions are grouped into buckets of ``bucket_rows``, each
    piece of a bucket written to its own Arrow IPC file and closed at once (no file stays open,
    whatever the number of buckets), and one bucket at a time is sorted in memory."""

    def __init__(self, total_rows: int, bucket_rows: int, columns: list[str], scratch: Path) -> None:
        self.total_rows, self.bucket_rows, self.columns = total_rows, max(1, bucket_rows), columns
        self.directory = Path(tempfile.mkdtemp(prefix="ordered-", dir=scratch))
        self.schema = pa.schema([(c, pa.string()) for c in columns] + [("__position", pa.int64())])
        self.pieces = 0

    def _bucket_dir(self, bucket: int) -> Path:
        return self.directory / f"{bucket:08d}"

    def add(self, frame: pd.DataFrame, positions: np.ndarray) -> None:
        if not len(frame):
            return
        buckets = positions // self.bucket_rows
        order = np.argsort(buckets, kind="stable")
        buckets, positions = buckets[order], positions[order]
        frame = frame.iloc[order]
        bounds = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1], True])
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            piece = frame.iloc[start:stop]
            batch = _string_batch(piece, self.columns, self.schema, [pa.array(positions[start:stop], pa.int64())])
            directory = self._bucket_dir(int(buckets[start]))
            directory.mkdir(exist_ok=True)
            with pa.OSFile(str(directory / f"{self.pieces:08d}.arrow"), "wb") as sink, \
                    pa.ipc.new_stream(sink, self.schema) as writer:
                writer.write_batch(batch)
            self.pieces += 1

    def chunks(self) -> Iterator[pd.DataFrame]:
        n_buckets = -(-self.total_rows // self.bucket_rows)
        expected = 0
        for bucket in range(n_buckets):
            directory = self._bucket_dir(bucket)
            if not directory.exists():
                continue
            tables = []
            for path in sorted(directory.iterdir()):
                with pa.OSFile(str(path), "rb") as source:
                    tables.append(pa.ipc.open_stream(source).read_all())
            frame = pa.concat_tables(tables).to_pandas()
            shutil.rmtree(directory)
            frame = frame.sort_values("__position", kind="stable")
            positions = frame.pop("__position").to_numpy()
            if positions[0] != expected or positions[-1] != expected + len(positions) - 1:
                raise RuntimeError(f"bucket {bucket}: positions {positions[0]}..{positions[-1]} are not "
                                   f"the expected run from {expected}")  # a bug, not bad input
            expected += len(positions)
            yield frame.reset_index(drop=True)
        if expected != self.total_rows:
            raise RuntimeError(f"{expected} rows written, {self.total_rows} expected")

    def write(self, target: Path) -> int:
        try:
            return write_csv_chunks(self.chunks(), target, self.columns)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


class ArrowSpool:
    """Frames of string columns appended to a temporary Arrow IPC file and read back in order,
    one record batch at a time (read, not memory-mapped: mapped pages of a file larger than
    memory would count as resident)."""

    def __init__(self, columns: list[str], scratch: Path) -> None:
        self.columns = columns
        handle, name = tempfile.mkstemp(prefix="spool-", suffix=".arrow", dir=scratch)
        os.close(handle)  # pyarrow opens the file itself
        self.path = Path(name)
        self.schema = pa.schema([(c, pa.string()) for c in columns])
        self._sink = pa.OSFile(str(self.path), "wb")
        self._writer = pa.ipc.new_file(self._sink, self.schema)

    def append(self, frame: pd.DataFrame) -> None:
        if len(frame):
            self._writer.write_batch(_string_batch(frame, self.columns, self.schema))

    def frames(self) -> Iterator[pd.DataFrame]:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None
        with pa.OSFile(str(self.path), "rb") as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i).to_pandas()


# ------------------------------------------------------------------ sparse output
class CsrNpzWriter:
    """A CSR matrix written row block by row block into an ``.npz`` that ``scipy.sparse.load_npz``
    reads (the members ``save_npz`` writes, stored as FeatureSet.save stores them); peak memory is
    one block."""

    def __init__(self, n_columns: int, scratch: Path) -> None:
        self.n_columns = n_columns
        self.directory = Path(tempfile.mkdtemp(prefix="csr-", dir=scratch))
        self._data = open(self.directory / "data.bin", "wb")
        self._indices = open(self.directory / "indices.bin", "wb")
        self._row_nnz: list[np.ndarray] = []
        self.rows = self.nnz = 0
        self.data_dtype: np.dtype | None = None

    def append(self, block: sp.csr_matrix) -> None:
        block = sp.csr_matrix(block)
        if block.shape[1] != self.n_columns:
            raise ValueError(f"block has {block.shape[1]} columns, the matrix {self.n_columns}")
        if self.data_dtype is None:
            self.data_dtype = block.data.dtype
        self._data.write(np.ascontiguousarray(block.data, dtype=self.data_dtype).tobytes())
        self._indices.write(np.ascontiguousarray(block.indices, dtype=np.int32).tobytes())
        self._row_nnz.append(np.diff(block.indptr).astype(np.int64))
        self.rows += block.shape[0]
        self.nnz += block.nnz

    def write(self, target: Path) -> tuple[int, int]:
        """Write the ``.npz`` (not atomic by itself: ``target`` is inside a staged directory)."""
        try:
            self._data.close()
            self._indices.close()
            indptr = np.zeros(self.rows + 1, dtype=np.int64)
            if self._row_nnz:
                np.cumsum(np.concatenate(self._row_nnz), out=indptr[1:])
            index_dtype = np.int32 if self.nnz <= np.iinfo(np.int32).max else np.int64
            data_dtype = self.data_dtype or np.dtype(np.float64)
            with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                self._member(archive, "indices", self.directory / "indices.bin", np.int32, self.nnz,
                             convert_to=index_dtype)
                self._array(archive, "indptr", indptr.astype(index_dtype))
                self._array(archive, "format", np.asarray(b"csr"))
                self._array(archive, "shape", np.asarray((self.rows, self.n_columns)))
                self._member(archive, "data", self.directory / "data.bin", data_dtype, self.nnz)
            return self.rows, self.nnz
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _array(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
        with npz_member(archive, name, array.nbytes) as member:
            np.lib.format.write_array(member, array, allow_pickle=False)

    @staticmethod
    def _member(archive: zipfile.ZipFile, name: str, source: Path, dtype, count: int,
                convert_to=None) -> None:
        out_dtype = np.dtype(convert_to or dtype)
        header = {"descr": np.lib.format.dtype_to_descr(out_dtype), "fortran_order": False, "shape": (count,)}
        block = 1 << 22  # elements per copy
        with npz_member(archive, name, count * out_dtype.itemsize) as member, open(source, "rb") as raw:
            np.lib.format.write_array_header_2_0(member, header)
            while True:
                values = np.fromfile(raw, dtype=dtype, count=block)
                if not len(values):
                    break
                member.write(values.astype(out_dtype, copy=False).tobytes())
