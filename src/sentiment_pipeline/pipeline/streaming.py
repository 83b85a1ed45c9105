"""Building blocks for stages that stream data larger than memory (``chunk_rows`` set).

The streamed stages hold per row only a few fixed-size numbers (a 128-bit key, a label code,
lengths); texts pass through in chunks. They write the same files as the in-memory path:

- duplicates are found with 128-bit keys (two SipHash-2-4 hashes with fixed keys, so the same
  text gets the same key on every machine); first occurrence wins, as in ``DataFrame.duplicated``;
- rows are written in the in-memory path's order by an external bucket sort (``OrderedCsvWriter``);
- sparse matrices go to ``.npz`` files array by array (``CsrNpzWriter``), never whole in memory.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from sentiment_pipeline.core.errors import PipelineError
from sentiment_pipeline.core.files import CSV_OPTIONS, atomic_path, npz_member

log = logging.getLogger(__name__)


class Cluster(Protocol):
    """What :func:`parallel_map` needs of ``cluster.DaskCluster`` (not imported here: the modules
    that import this one, and so the stages that list it in dvc.yaml, need no Dask)."""

    @property
    def client(self) -> Any: ...
    @property
    def address(self) -> str: ...
    @property
    def started_here(self) -> bool: ...


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


class WorkerLost(PipelineError):
    """A process computing chunks died (killed, e.g. for lack of memory) or its cluster went away:
    the stage stops with one line and writes nothing."""


def parallel_map(function: Callable, arguments: Iterable[tuple], n_jobs: int, *, cluster: Cluster | None = None,
                 constants: tuple = (), what: str = "chunk") -> Iterator:
    """``function(*args, *constants)`` for each tuple of ``arguments``, results in order, with at
    most two tasks per worker in flight, so that memory stays bounded whatever the input's size
    (joblib's generator output keeps dispatching, and reading input, ahead of a slow consumer).

    Without ``cluster``: ``n_jobs`` worker processes of this machine (loky's reusable executor, the
    one joblib runs on). A finished result is sent to this process at once, so a window of 2 x
    workers results can be here together: a chunk's result should be small (the features write
    their blocks to scratch files instead; see :class:`CsrPart`). With ``cluster``: the Dask
    cluster's worker threads; ``constants`` go to every worker once (scattered), results stay on
    the workers until taken, in order. The same functions run either way, so the results are the
    same. ``what`` names a task in messages (``preprocess chunk``: "... preprocess chunk 3 ...")."""
    if cluster is not None:
        yield from _dask_map(function, arguments, cluster, constants, what)
        return
    from joblib import effective_n_jobs
    from joblib.externals.loky import get_reusable_executor

    workers = effective_n_jobs(n_jobs)
    if workers == 1:
        yield from (function(*args, *constants) for args in arguments)
        return
    executor = get_reusable_executor(max_workers=workers)
    pending: deque[tuple[int, Any]] = deque()
    drain = True
    try:
        for number, args in enumerate(arguments, start=1):
            pending.append((number, executor.submit(function, *args, *constants)))
            if len(pending) >= 2 * workers:
                yield _local_result(pending.popleft(), what)
        while pending:
            yield _local_result(pending.popleft(), what)
    except (WorkerLost, KeyboardInterrupt):
        drain = False  # the pool is broken, or the user wants out now
        raise
    except GeneratorExit as exc:  # closed by the consumer: on Ctrl-C there, do not wait either
        drain = not isinstance(exc.__context__, (WorkerLost, KeyboardInterrupt))
        raise
    finally:
        # Stopped early (an error here or in the consumer, or closed): the tasks not started are
        # dropped, and those a worker already holds (running, or the one in loky's call queue) are
        # waited for, about two tasks' time, so that none still writes into a scratch directory
        # the caller is about to remove.
        running = [future for _, future in pending if not future.cancel()]
        if running and drain:
            from concurrent.futures import wait

            log.info("waiting for %d running %s task(s) to end", len(running), what)
            wait(running, timeout=DRAIN_SECONDS)


def _local_result(task: tuple[int, Any], what: str):
    from concurrent.futures.process import BrokenProcessPool

    number, future = task
    try:
        return future.result()
    except BrokenProcessPool as exc:  # loky's TerminatedWorkerError is one: a worker died
        codes = re.search(r"exit codes of the workers are \{([^}]*)\}", str(exc))
        raise WorkerLost(f"a worker process died{f' (exit code {codes.group(1)})' if codes else ''}, e.g. killed "
                         f"for lack of memory, with {what} {number} not done; nothing was written") from None


# How long a stopped map waits for its running tasks to end (a task is one chunk: ~1 min at
# 100,000 rows with char n-grams on the 2-core benchmark machine) before its caller cleans up.
DRAIN_SECONDS = 120.0

# How often a wait for a Dask result checks that the cluster still has workers, and how long it
# may have none: a LocalCluster's nanny restarts a killed worker in ~2 s, a cluster's autoscaler
# may take a minute or two to add one; after that, the stage stops instead of hanging.
_DASK_POLL_SECONDS = 5.0
DASK_NO_WORKERS_SECONDS = 300.0


class _Sealed:
    """Arguments handed to Dask as one object: a list or dict would be searched item by item for
    futures (a chunk's 100,000 texts), or scattered as one future per item."""

    __slots__ = ("values",)

    def __init__(self, values: tuple) -> None:
        self.values = values


def _call_sealed(function: Callable, arguments: _Sealed, constants: _Sealed):
    return function(*arguments.values, *constants.values)


def _dask_map(function: Callable, arguments: Iterable[tuple], cluster: Cluster, constants: tuple,
              what: str) -> Iterator:
    client = cluster.client
    # sent to every worker once (broadcast), under a random key (hash=False: no hashing of an
    # idf_ of 2^20 floats); a worker started later fetches it from another
    try:
        shared = client.scatter(_Sealed(constants), broadcast=True, hash=False)
    except (TimeoutError, OSError) as exc:  # no worker to take it, or the scheduler gone
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WorkerLost(f"{what}s: could not send the shared inputs to the workers of the Dask cluster at "
                         f"{cluster.address} ({reason}); nothing was written") from None
    window = 2 * max(1, sum(client.nthreads().values()))  # the threads at the start
    pending: deque[tuple[int, Any]] = deque()
    drain = True
    try:
        for number, args in enumerate(arguments, start=1):
            task = client.submit(_call_sealed, function, _Sealed(args), shared, pure=False,
                                 key=f"{getattr(function, '__name__', 'task')}-{uuid.uuid4().hex}")
            pending.append((number, task))
            if len(pending) >= window:
                yield _dask_result(cluster, pending.popleft(), what)
        while pending:
            yield _dask_result(cluster, pending.popleft(), what)
    except (WorkerLost, KeyboardInterrupt):
        drain = False  # workers or the scheduler gone, or the user wants out now
        raise
    except GeneratorExit as exc:  # closed by the consumer: on Ctrl-C there, do not wait either
        drain = not isinstance(exc.__context__, (WorkerLost, KeyboardInterrupt))
        raise
    finally:
        unfinished = [future for _, future in pending]
        try:
            if unfinished and drain and cluster.started_here and client.status == "running":
                _drain_dask(client, unfinished, what)
        finally:
            if client.status == "running":
                client.cancel([*unfinished, shared])


def _drain_dask(client, futures: list, what: str) -> None:
    """Stopped early on a LocalCluster, whose workers write into the caller's scratch directory:
    cancel every task (none starts after that), then wait while a worker still executes one (Dask
    cannot stop a running task; cancelling only drops its result) before the caller removes the
    directory. What executes is asked of the workers (call_stack), not of the scheduler, whose
    "processing" also counts tasks queued on a worker."""
    import time

    keys = {future.key for future in futures}
    with suppress(Exception):
        client.cancel(futures)
        deadline, said = time.monotonic() + DRAIN_SECONDS, False
        while time.monotonic() < deadline:
            running = keys & {key for stacks in client.call_stack().values() for key in stacks}
            if not running:
                break
            if not said:
                log.info("waiting for %d running %s task(s) to end", len(running), what)
                said = True
            time.sleep(0.2)


def _dask_result(cluster: Cluster, task: tuple[int, Any], what: str):
    """The future's result; a lost worker or cluster as :class:`WorkerLost` (one line)."""
    from concurrent.futures import CancelledError

    from distributed import KilledWorker

    number, future = task
    without_workers = 0.0
    where = f"the Dask cluster at {cluster.address}"
    while True:
        try:
            return future.result(timeout=_DASK_POLL_SECONDS)
        except TimeoutError:
            if future.status == "error":  # the task's own TimeoutError, not the poll's
                raise
            try:
                has_workers = bool(cluster.client.nthreads())
            except OSError as exc:  # the scheduler itself is gone
                raise WorkerLost(f"{what} {number}: lost {where} ({str(exc).splitlines()[0]}); nothing was written") from None
            without_workers = 0.0 if has_workers else without_workers + _DASK_POLL_SECONDS
            if without_workers >= DASK_NO_WORKERS_SECONDS:
                raise WorkerLost(f"{what} {number}: {where} has had no workers for {DASK_NO_WORKERS_SECONDS:.0f} s; "
                                 "nothing was written") from None
        except KilledWorker as exc:
            raise WorkerLost(f"{what} {number}: {exc.allowed_failures + 1} worker(s) of {where} died computing it "
                             "(killed, e.g. for lack of memory; Dask retries a lost worker's task on another up "
                             "to distributed.scheduler.allowed-failures times); nothing was written") from None
        except CancelledError as exc:  # the scheduler dropped it: restarted, or the connection lost
            raise WorkerLost(f"{what} {number}: cancelled by {where} ({exc}); nothing was written") from None
        except ModuleNotFoundError as exc:  # raised on a worker: the package is not installed there
            raise WorkerLost(f"{what} {number}: the workers of {where} cannot import {exc.name!r}: install "
                             "sentiment-pipeline (and its kernels' environment, docs/scaling.md) on them") from None


def csv_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """``files.iter_csv``, with a malformed line as one line naming the file and the line."""
    from sentiment_pipeline.core.errors import DataError
    from sentiment_pipeline.core.files import iter_csv

    try:
        yield from iter_csv(path, chunk_rows)
    except pd.errors.ParserError as exc:  # "Error tokenizing data. C error: Expected 3 fields in line 58, saw 4"
        reason = str(exc).strip().splitlines()[0].removeprefix("Error tokenizing data. C error: ")
        raise DataError(f"{path}: not a well-formed CSV file: {reason}") from None


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
@dataclass
class CsrPart:
    """Consecutive rows of a CSR matrix, as :class:`CsrNpzWriter` takes them: each row's non-zero
    count, and the values and column indices either as arrays (a list of pieces each) or in the
    two files ``<stem>.data`` and ``<stem>.indices`` that a worker process of this machine wrote."""

    n_columns: int
    row_nnz: np.ndarray  # int32, one a row
    data_dtype: str
    data: list[np.ndarray] | None = None
    indices: list[np.ndarray] | None = None
    stem: str | None = None


def csr_part(blocks: Iterable[sp.csr_matrix], n_columns: int, stem: str | None = None) -> CsrPart:
    """Row blocks (e.g. a chunk's, transformed a piece at a time) as one :class:`CsrPart`: their
    values and indices appended to ``stem``'s two files when given (a worker on the writer's
    machine: only 4 bytes a row go back to the writer, where the arrays through a pipe would be
    ~3.3 KB a row with char n-grams, pickled on one side and unpickled on the other), else kept
    as arrays, piece by piece (a Dask worker, whose disk the writer may not see: no copy joins them)."""
    row_nnz: list[np.ndarray] = []
    values: list[np.ndarray] = []
    columns: list[np.ndarray] = []
    dtype: np.dtype | None = None
    with ExitStack() as stack:
        files = None if stem is None else [stack.enter_context(open(f"{stem}.{n}", "wb")) for n in ("data", "indices")]
        for block in blocks:
            block = sp.csr_matrix(block)
            if block.shape[1] != n_columns:
                raise ValueError(f"block has {block.shape[1]} columns, the matrix {n_columns}")
            if dtype is None:  # (a dtype is falsy: len() of a non-structured dtype is 0)
                dtype = block.data.dtype
            data = np.ascontiguousarray(block.data, dtype=dtype)
            indices = np.ascontiguousarray(block.indices, dtype=np.int32)
            row_nnz.append(np.diff(block.indptr).astype(np.int32))
            if files is None:
                values.append(data)
                columns.append(indices)
            else:
                data.tofile(files[0])
                indices.tofile(files[1])
    dtype = np.dtype(np.float64) if dtype is None else dtype
    lengths = np.concatenate(row_nnz) if row_nnz else np.zeros(0, np.int32)
    if stem is not None:
        return CsrPart(n_columns, lengths, dtype.str, stem=stem)
    return CsrPart(n_columns, lengths, dtype.str, data=values, indices=columns)


class CsrNpzWriter:
    """A CSR matrix written part by part into an ``.npz`` that ``scipy.sparse.load_npz`` reads (the
    members ``save_npz`` writes, stored as FeatureSet.save stores them). Each part's values and
    indices wait in scratch files; this process keeps 4 bytes a row (the row lengths: 40 MB for 10M
    rows) and, while writing, one 32 MB block of a member at a time."""

    def __init__(self, n_columns: int, scratch: Path) -> None:
        self.n_columns = n_columns
        self.directory = Path(tempfile.mkdtemp(prefix="csr-", dir=scratch))
        self._files: list[tuple[Path, Path]] = []
        self._row_nnz: list[np.ndarray] = []
        self.rows = self.nnz = 0
        self.data_dtype: np.dtype | None = None

    def append(self, block: sp.csr_matrix) -> None:
        """Rows computed in this process."""
        self.add(csr_part([block], self.n_columns))

    def add(self, part: CsrPart) -> None:
        """The next rows, from :func:`csr_part`; a part's files become the writer's (moved)."""
        if part.n_columns != self.n_columns:
            raise ValueError(f"block has {part.n_columns} columns, the matrix {self.n_columns}")
        dtype = np.dtype(part.data_dtype)
        if self.data_dtype is None:
            self.data_dtype = dtype
        elif dtype != self.data_dtype:
            raise ValueError(f"a part of dtype {dtype} after parts of {self.data_dtype}")
        stem = self.directory / f"{len(self._files):08d}"
        paths = (stem.with_suffix(".data"), stem.with_suffix(".indices"))
        if part.stem is not None:
            for kind, path in zip(("data", "indices"), paths, strict=True):
                shutil.move(f"{part.stem}.{kind}", path)
        else:
            assert part.data is not None and part.indices is not None  # csr_part gives arrays or files
            with open(paths[0], "wb") as data, open(paths[1], "wb") as indices:
                for values, columns in zip(part.data, part.indices, strict=True):
                    values.astype(dtype, copy=False).tofile(data)
                    columns.astype(np.int32, copy=False).tofile(indices)
        self._files.append(paths)
        self._row_nnz.append(part.row_nnz.astype(np.int32, copy=False))
        self.rows += len(part.row_nnz)
        self.nnz += int(part.row_nnz.sum(dtype=np.int64))

    def write(self, target: Path) -> tuple[int, int]:
        """Write the ``.npz`` (not atomic by itself: ``target`` is inside a staged directory)."""
        try:
            index_dtype = np.dtype(np.int32 if self.nnz <= np.iinfo(np.int32).max else np.int64)
            data_dtype = np.dtype(np.float64) if self.data_dtype is None else self.data_dtype
            with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                self._member(archive, "indices", [i for _, i in self._files], np.int32, self.nnz, index_dtype)
                self._indptr(archive, index_dtype)
                self._array(archive, "format", np.asarray(b"csr"))
                self._array(archive, "shape", np.asarray((self.rows, self.n_columns)))
                self._member(archive, "data", [d for d, _ in self._files], data_dtype, self.nnz, data_dtype)
            return self.rows, self.nnz
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _array(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
        with npz_member(archive, name, array.nbytes) as member:
            np.lib.format.write_array(member, array, allow_pickle=False)

    def _indptr(self, archive: zipfile.ZipFile, dtype: np.dtype) -> None:
        """The row pointers, summed part by part: the bytes ``_array`` writes for the whole array
        (header version 1.0, as ``write_array`` picks for it)."""
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (self.rows + 1,)}
        with npz_member(archive, "indptr", (self.rows + 1) * dtype.itemsize) as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(np.zeros(1, dtype).tobytes())
            offset = 0
            for lengths in self._row_nnz:
                ends = np.cumsum(lengths, dtype=np.int64)
                ends += offset
                member.write(ends.astype(dtype, copy=False).tobytes())
                offset = int(ends[-1]) if len(ends) else offset

    @staticmethod
    def _member(archive: zipfile.ZipFile, name: str, sources: list[Path], dtype, count: int, out_dtype) -> None:
        """One array member from the parts' files in order; each file is deleted once copied."""
        out_dtype = np.dtype(out_dtype)
        header = {"descr": np.lib.format.dtype_to_descr(out_dtype), "fortran_order": False, "shape": (count,)}
        block = 1 << 22  # elements per copy: 32 MB of float64
        with npz_member(archive, name, count * out_dtype.itemsize) as member:
            np.lib.format.write_array_header_2_0(member, header)
            for source in sources:
                with open(source, "rb") as raw:
                    while True:
                        values = np.fromfile(raw, dtype=dtype, count=block)
                        if not len(values):
                            break
                        member.write(values.astype(out_dtype, copy=False).tobytes())
                source.unlink()
