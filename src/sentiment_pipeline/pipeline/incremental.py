"""The ``sgd`` family: a linear model learnt by ``SGDClassifier.partial_fit`` over row blocks, so
it can learn from a training matrix that is never whole in memory (``train.chunk_rows``).

What a fit does is defined on the rows' positions in the full training matrix (``row_ids``), not
on where the rows come from, so a fit on an in-memory matrix (GridSearchCV slices ``row_ids`` per
fold like the sample weights) and a fit fed from ``X_train.npz`` block by block run the same
``partial_fit`` calls on the same arrays, and give the same bits:

- **Held out for calibration**: row ``i`` is held out when a seeded hash of ``i`` falls below
  ``min(calibration_share, calibration_rows / rows of the fit)``: a share of the rows, at most
  about ``calibration_rows`` of them, whatever the size of the data.
- **Learning**: the other rows in ``ceil(total_rows / block_rows)`` blocks. The rows are cut into
  stripes of ``STRIPE_ROWS`` (64) consecutive positions, and a seeded hash of a stripe draws its
  block: a block is ~``block_rows / 64`` stripes from anywhere in the file, so it holds the file's
  class mix (the training split keeps its source's order, which can be sorted by label: the
  airline data's is, and blocks of consecutive rows would each hold one class), and a streamed
  pass reads it as that many contiguous runs of rows. A CV fold's fit sees its own rows of each
  block. Each of ``epochs`` passes visits the blocks in a
  seeded order (sorted by a hash of (seed, epoch, block)) and a block's rows in a seeded order
  (by a hash of (seed, epoch, row)); one ``partial_fit`` per block, SGD's own shuffle off. Keys,
  not permutations: a subset of the rows (a fold) is visited in the order the whole would be, so
  one pass over the blocks feeds every fold's model.
- **Calibration**: one sigmoid (or isotonic map) per class fitted on the held-out rows' margins,
  unweighted, as ``CalibratedClassifierCV`` fits them (class weights go to the SGD only: weighted
  calibrators would learn the reweighted class mix); probabilities normalised as it normalises
  them. Labels come from the margins, as the calibrated SVM's do.

The streamed cross-validation below reads ``X_train.npz`` (members stored uncompressed, as
featurize writes them) by file offset: the row pointers whole, then each stripe's or chunk's slice
of the values and column indices with explicit reads, never a memory map (mapped pages of a file
larger than memory count as resident), nor a copy of the file.
"""

from __future__ import annotations

import logging
import struct
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import f1_score

from sentiment_pipeline.core.errors import ConfigError, DataError
from sentiment_pipeline.pipeline.models import calibrated_proba

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- seeded keys
_MASK64 = (1 << 64) - 1
_HOLDOUT, _BLOCKS, _ROWS = 1, 2, 3  # what a key orders or selects


def _mix(value: int) -> int:
    """SplitMix64's finaliser on a Python int (the salts)."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _salt(seed: int, purpose: int, epoch: int = 0) -> np.uint64:
    return np.uint64(_mix(_mix(_mix(seed & _MASK64) ^ purpose) ^ epoch))


def _keys(ids: np.ndarray, salt: np.uint64) -> np.ndarray:
    """SplitMix64 of each id xor ``salt``: 64 well-mixed bits per id, the same on every machine
    (integer arithmetic; uint64 arrays wrap silently)."""
    x = np.asarray(ids).astype(np.uint64) ^ salt
    x += np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def holdout_uniform(ids: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per row id: a row is held out for calibration below the share."""
    return (_keys(ids, _salt(seed, _HOLDOUT)) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


# Rows that go to a block together: a streamed pass reads a block as runs of this many rows (64
# rows of ~400 non-zeros: 300 KB a read), and a 10,000-row block is ~156 runs from all over the file.
STRIPE_ROWS = 64


def block_of(ids: np.ndarray, n_blocks: int, seed: int) -> np.ndarray:
    """Each row's block: the top 32 bits of its stripe's hash scaled to ``n_blocks`` (integer
    arithmetic, so the same on every machine)."""
    stripes = np.asarray(ids, dtype=np.int64) // STRIPE_ROWS
    return ((_keys(stripes, _salt(seed, _BLOCKS)) >> np.uint64(32)) * np.uint64(n_blocks)
            >> np.uint64(32)).astype(np.int64)


def block_order(blocks: np.ndarray, epoch: int, seed: int) -> np.ndarray:
    """``blocks`` in the order epoch ``epoch`` visits them."""
    return blocks[np.argsort(_keys(blocks, _salt(seed, _BLOCKS, epoch)), kind="stable")]


def row_order(ids: np.ndarray, epoch: int, seed: int) -> np.ndarray:
    """The positions of ``ids`` in the order epoch ``epoch`` learns them within their block."""
    return np.argsort(_keys(ids, _salt(seed, _ROWS, epoch)), kind="stable")


def _seed(random_state) -> int:
    return 0 if random_state is None else int(random_state)


def take_rows(X, rows: np.ndarray) -> sp.csr_matrix:
    """Rows of a CSR matrix, in the given order, with 32-bit indices (what ``partial_fit``
    accepts); both the in-memory and the streamed fit cut their blocks with it."""
    sub = X[rows]
    return sp.csr_matrix((sub.data, sub.indices.astype(np.int32, copy=False), sub.indptr.astype(np.int32, copy=False)),
                         shape=sub.shape, copy=False)


def n_blocks(total_rows: int, block_rows: int) -> int:
    return max(1, -(-int(total_rows) // int(block_rows)))


def _label_index(margins: np.ndarray) -> np.ndarray:
    """The class index each row's margins choose (the positive class above 0 with two classes)."""
    return (margins > 0).astype(np.intp) if margins.ndim == 1 else np.argmax(margins, axis=1)


# ----------------------------------------------------------------------------- the estimator
class _Learner:
    """One fit in progress: the SGD fed block by block, then its calibrators. The in-memory fit and
    the streamed one drive the same object, so the same calls reach ``partial_fit``."""

    def __init__(self, estimator: IncrementalSGDClassifier, y_fit: np.ndarray) -> None:
        from sklearn.linear_model import SGDClassifier

        self.estimator = estimator
        self.classes = np.unique(y_fit)
        if len(self.classes) < 2:
            raise DataError(f"the sgd family needs two classes among its {len(y_fit)} training rows")
        self.seed = _seed(estimator.random_state)
        # a share of the rows, bounded in number: 10% of 10M rows would be a million margins
        self.share = min(float(estimator.calibration_share), estimator.calibration_rows / len(y_fit))
        self.sgd = SGDClassifier(loss=estimator.loss, penalty="l2", alpha=estimator.alpha, average=estimator.average,
                                 learning_rate="optimal", shuffle=False, random_state=self.seed)
        self.learnt = False

    def held(self, uniform: np.ndarray) -> np.ndarray:
        return uniform < self.share

    def learn(self, X: sp.csr_matrix, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        if self.learnt:
            self.sgd.partial_fit(X, y, sample_weight=sample_weight)
        else:  # the first call names every class: a block may lack one
            self.sgd.partial_fit(X, y, classes=self.classes, sample_weight=sample_weight)
            self.learnt = True

    def decision(self, X: sp.csr_matrix) -> np.ndarray:
        return self.sgd.decision_function(X)

    def finish(self, margins: np.ndarray, y_held: np.ndarray, n_features: int) -> IncrementalSGDClassifier:
        """Fit the calibrators on the held-out rows' margins (in row order) and set the
        estimator's fitted attributes."""
        from sklearn.calibration import _SigmoidCalibration
        from sklearn.isotonic import IsotonicRegression

        if not self.learnt:
            raise DataError("the sgd family had no training rows left after holding out its calibration rows")
        if not len(y_held):
            raise ConfigError(f"train.families.sgd.calibration_share={self.estimator.calibration_share} and "
                              f"calibration_rows={self.estimator.calibration_rows}: no training row was held out "
                              "to calibrate the probabilities; raise them")
        margins = margins.reshape(-1, 1) if margins.ndim == 1 else margins
        # label_binarize's columns: one per class, or the positive class alone with two
        targets = (y_held[:, None] == self.classes[None, 1:] if len(self.classes) == 2
                   else y_held[:, None] == self.classes[None, :]).astype(np.int64)
        calibrators = []
        for margin, target in zip(margins.T, targets.T, strict=True):
            calibrator = (_SigmoidCalibration() if self.estimator.calibration == "sigmoid"
                          else IsotonicRegression(out_of_bounds="clip"))
            calibrators.append(calibrator.fit(margin, target))
        estimator = self.estimator
        estimator.model_ = self.sgd
        estimator.calibrators_ = calibrators
        estimator.classes_ = self.classes
        estimator.calibration_rows_ = int(len(y_held))
        estimator.n_features_in_ = int(n_features)
        return estimator


class IncrementalSGDClassifier(ClassifierMixin, BaseEstimator):
    """A linear classifier (hinge, logistic or modified Huber loss, L2) learnt by
    ``SGDClassifier.partial_fit`` over seeded blocks of rows, with calibrated probabilities from
    the margins of a held-out share of the rows (see the module docstring).

    ``fit(X, y, sample_weight, row_ids, total_rows)``: ``row_ids`` are the rows' positions in the
    whole training matrix of ``total_rows`` rows (default: 0..n-1 of n), so a fold's fit blocks and
    orders its rows as a streamed fit of the whole file does."""

    def __init__(self, loss: str = "log_loss", alpha: float = 1e-4, epochs: int = 20, average: bool = False,
                 block_rows: int = 10_000, calibration: str = "sigmoid", calibration_share: float = 0.05,
                 calibration_rows: int = 100_000, random_state: int | None = None):
        self.loss = loss
        self.alpha = alpha
        self.epochs = epochs
        self.average = average
        self.block_rows = block_rows
        self.calibration = calibration
        self.calibration_share = calibration_share
        self.calibration_rows = calibration_rows
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None, row_ids=None, total_rows=None):
        X = X if sp.issparse(X) else sp.csr_matrix(np.asarray(X, dtype=np.float64))
        X, y = X.tocsr(), np.asarray(y)
        n = X.shape[0]
        row_ids = np.arange(n, dtype=np.int64) if row_ids is None else np.asarray(row_ids, dtype=np.int64)
        if total_rows is None:
            total_rows = int(row_ids.max()) + 1 if n else 0
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if len(y) != n or len(row_ids) != n or (weights is not None and len(weights) != n):
            raise ValueError(f"X has {n} rows; y, row_ids and sample_weight must have as many")
        learner = _Learner(self, y)
        held = learner.held(holdout_uniform(row_ids, learner.seed))
        train = np.flatnonzero(~held)
        assigned = block_of(row_ids[train], n_blocks(total_rows, self.block_rows), learner.seed)
        by_block = np.argsort(assigned, kind="stable")  # a block's rows in row order, as streamed
        train = train[by_block]
        blocks, starts = np.unique(assigned[by_block], return_index=True)
        ends = np.append(starts[1:], len(train))
        where = {int(b): (int(s), int(e)) for b, s, e in zip(blocks, starts, ends, strict=True)}
        for epoch in range(self.epochs):
            for block in block_order(blocks, epoch, learner.seed):
                start, stop = where[int(block)]
                rows = train[start:stop]
                rows = rows[row_order(row_ids[rows], epoch, learner.seed)]
                learner.learn(take_rows(X, rows), y[rows], None if weights is None else weights[rows])
        held_rows = np.flatnonzero(held)
        held_rows = held_rows[np.argsort(row_ids[held_rows], kind="stable")]  # row order, as streamed
        margins = learner.decision(take_rows(X, held_rows)) if len(held_rows) else np.zeros(0)
        return learner.finish(margins, y[held_rows], X.shape[1])

    def decision_function(self, X):
        return self.model_.decision_function(X)

    def predict(self, X):
        # From the margins, not the calibrated probabilities: calibration maps scores back to the
        # skewed class mix, which would undo the balanced weights the SGD learnt with.
        return self.classes_[_label_index(self.decision_function(X))]

    def predict_proba(self, X):
        """``CalibratedClassifierCV``'s one-vs-rest calibrated probabilities, step for step
        (``sklearn.calibration._CalibratedClassifier.predict_proba``)."""
        margins = self.decision_function(X)
        margins = margins.reshape(-1, 1) if margins.ndim == 1 else margins
        n_classes = len(self.classes_)
        proba = np.zeros((margins.shape[0], n_classes))
        for class_idx, (margin, calibrator) in enumerate(zip(margins.T, self.calibrators_, strict=True)):
            proba[:, class_idx + 1 if n_classes == 2 else class_idx] = calibrator.predict(margin)
        return calibrated_proba(proba)


# ----------------------------------------------------------------------------- reading X_train.npz
def _read_into(file, out: np.ndarray, path: Path) -> np.ndarray:
    """Fill the contiguous array ``out`` from ``file``'s position (explicit reads, no map)."""
    view = out.view(np.uint8).data
    done = 0
    while done < len(view):  # one read(2) returns at most ~2 GiB
        got = file.readinto(view[done:])
        if not got:
            raise DataError(f"{path}: ends inside an array (truncated file?)")
        done += got
    return out


@dataclass(frozen=True)
class _Member:
    offset: int  # of the array's first byte in the file
    dtype: np.dtype
    length: int


class CsrNpzReader:
    """Row blocks of a CSR matrix in an ``.npz`` whose members are stored, not deflated (as
    ``files.save_npz`` and ``streaming.CsrNpzWriter`` write them). Holds the row pointers
    (4 or 8 bytes a row); every block's values and column indices are read from their offsets."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        with zipfile.ZipFile(self.path) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            missing = sorted({"data.npy", "indices.npy", "indptr.npy", "format.npy", "shape.npy"} - set(infos))
            if missing:
                raise DataError(f"{self.path}: not a CSR matrix .npz (no {', '.join(missing)})")
            with archive.open("format.npy") as member:
                matrix_format = np.lib.format.read_array(member, allow_pickle=False).item()
            with archive.open("shape.npy") as member:
                shape = np.lib.format.read_array(member, allow_pickle=False)
        if matrix_format not in (b"csr", "csr"):
            raise DataError(f"{self.path}: holds a {matrix_format!r} matrix; streamed training reads CSR")
        self.shape = (int(shape[0]), int(shape[1]))
        self._file = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        try:
            self._data = self._member(infos["data.npy"])
            self._indices = self._member(infos["indices.npy"])
            indptr = self._member(infos["indptr.npy"])
            if indptr.length != self.shape[0] + 1 or self._data.length != self._indices.length:
                raise DataError(f"{self.path}: its arrays' lengths do not fit a {self.shape} CSR matrix")
            self.indptr = self._read(indptr, 0, indptr.length)
            self.data_dtype = self._data.dtype
        except BaseException:
            self._file.close()
            raise

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    def _member(self, info: zipfile.ZipInfo) -> _Member:
        if info.compress_type != zipfile.ZIP_STORED:
            raise DataError(f"{self.path}: member {info.filename} is compressed; streamed training reads stored "
                            "members by offset (as featurize writes them): re-run featurize")
        self._file.seek(info.header_offset)
        header = self._file.read(30)
        if header[:4] != b"PK\x03\x04":
            raise DataError(f"{self.path}: no local header for {info.filename}")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        self._file.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(self._file)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(self._file)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(self._file)
        else:
            raise DataError(f"{self.path}: {info.filename} has .npy format {version}, which this reader does not know")
        if fortran_order or len(shape) != 1 or dtype.hasobject:
            raise DataError(f"{self.path}: {info.filename} is not a flat array")
        return _Member(self._file.tell(), dtype, int(shape[0]))

    def _read(self, member: _Member, start: int, count: int) -> np.ndarray:
        """``count`` elements from element ``start``, by explicit reads into a new array."""
        self._file.seek(member.offset + start * member.dtype.itemsize)
        return _read_into(self._file, np.empty(count, dtype=member.dtype), self.path)

    def rows(self, start: int, stop: int) -> sp.csr_matrix:
        """Rows ``start`` to ``stop - 1`` as a CSR matrix with 32-bit indices."""
        return self.gather(np.array([start]), np.array([stop]))

    def gather(self, starts: np.ndarray, stops: np.ndarray) -> sp.csr_matrix:
        """The rows of the runs ``starts[i]`` to ``stops[i] - 1``, run after run, as one CSR matrix
        with 32-bit indices: each run's values and column indices read into place."""
        lo, hi = self.indptr[starts].astype(np.int64), self.indptr[stops].astype(np.int64)
        counts = hi - lo
        if counts.sum() > np.iinfo(np.int32).max:  # partial_fit takes 32-bit indices only
            raise ConfigError(f"{self.path}: a block of {int(counts.sum()):,} non-zeros, more than 32-bit indices "
                              "hold: lower train.families.sgd.block_rows or train.chunk_rows")
        data = np.empty(int(counts.sum()), dtype=self._data.dtype)
        indices = np.empty(len(data), dtype=self._indices.dtype)
        at = 0
        for first, count in zip(lo.tolist(), counts.tolist(), strict=True):
            for member, out in ((self._data, data), (self._indices, indices)):
                self._file.seek(member.offset + first * member.dtype.itemsize)
                _read_into(self._file, out[at:at + count], self.path)
            at += count
        lengths = np.concatenate([np.diff(self.indptr[start:stop + 1]) for start, stop in zip(starts, stops, strict=True)])
        indptr = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(lengths, out=indptr[1:])
        return sp.csr_matrix((data, indices.astype(np.int32, copy=False), indptr),
                             shape=(len(lengths), self.shape[1]), copy=False)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CsrNpzReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------- streamed training
def fold_numbers(folds: Iterator, n_rows: int, n_folds: int) -> np.ndarray:
    """Each row's validation fold (1 byte a row instead of the folds' index arrays, 8 bytes a row
    per fold)."""
    fold_of = np.full(n_rows, -1, dtype=np.int8 if n_folds < 128 else np.int16)
    for k, (_, valid) in enumerate(folds):
        fold_of[valid] = k
    return fold_of


@dataclass(eq=False)
class _Job:
    """One model fed by the passes: a (candidate, fold) of the CV, or the refit (fold None)."""

    learner: _Learner
    fold: int | None
    class_weight: np.ndarray | None  # per class of the training labels (np.unique order)
    held_margins: list[np.ndarray] = field(default_factory=list)
    held_y: list[np.ndarray] = field(default_factory=list)

    def members(self, folds: np.ndarray) -> np.ndarray:
        return np.ones(len(folds), dtype=bool) if self.fold is None else folds != self.fold


class StreamedTraining:
    """Models learnt from ``reader``'s rows in passes over the file: the training passes read
    blocks of each model's ``block_rows`` in the epoch's block order and feed every model whose
    rows they hold (models of one seed and block size share each pass, a thread per model at a
    time); one more pass in ``chunk_rows`` collects the held-out margins, the validation
    predictions and any out-of-fold probabilities, and the calibrators are fitted."""

    def __init__(self, reader: CsrNpzReader, y: np.ndarray, fold_of: np.ndarray, chunk_rows: int, n_jobs: int) -> None:
        if reader.n_rows != len(y):
            raise DataError(f"{reader.path} has {reader.n_rows} rows, y_train {len(y)}: re-run featurize")
        self.reader, self.y, self.fold_of, self.chunk_rows = reader, y, fold_of, chunk_rows
        self.classes = np.unique(y)
        self.pool = ThreadPoolExecutor(max_workers=max(1, n_jobs), thread_name_prefix="sgd")
        self.passes = 0

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def _blocks(self, block_rows: int, seed: int) -> list[np.ndarray]:
        """Each block's stripes, ascending (so its rows come in row order, as in memory)."""
        n = self.reader.n_rows
        first_rows = np.arange(0, n, STRIPE_ROWS, dtype=np.int64)
        assigned = block_of(first_rows, n_blocks(n, block_rows), seed)
        order = np.argsort(assigned, kind="stable")
        bounds = np.searchsorted(assigned[order], np.arange(n_blocks(n, block_rows) + 1))
        return [first_rows[order[a:b]] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def job(self, estimator: IncrementalSGDClassifier, class_weight: np.ndarray | None, fold: int | None) -> _Job:
        y_fit = self.y if fold is None else self.y[self.fold_of != fold]
        return _Job(_Learner(estimator, y_fit), fold, class_weight)

    def _weights(self, job: _Job, y_rows: np.ndarray) -> np.ndarray | None:
        return None if job.class_weight is None else job.class_weight[np.searchsorted(self.classes, y_rows)]

    def _each(self, function, jobs: list[_Job]) -> None:
        for _ in self.pool.map(function, jobs):  # re-raises a failed model's error
            pass

    def train(self, jobs: list[_Job]) -> None:
        groups: dict[tuple[int, int], list[_Job]] = {}
        for job in jobs:
            groups.setdefault((job.learner.estimator.block_rows, job.learner.seed), []).append(job)
        n = self.reader.n_rows
        for (block_rows, seed), group in groups.items():
            stripes = self._blocks(block_rows, seed)
            blocks = np.arange(len(stripes), dtype=np.int64)
            for epoch in range(max(job.learner.estimator.epochs for job in group)):
                started = time.perf_counter()
                active = [job for job in group if epoch < job.learner.estimator.epochs]
                for block in block_order(blocks, epoch, seed):
                    starts = stripes[int(block)]
                    if not len(starts):
                        continue
                    stops = np.minimum(starts + STRIPE_ROWS, n)
                    X_block = self.reader.gather(starts, stops)
                    ids = np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in zip(starts, stops, strict=True)])
                    order = row_order(ids, epoch, seed)
                    X_block, ids = take_rows(X_block, order), ids[order]
                    y_block, folds = self.y[ids], self.fold_of[ids]
                    held = holdout_uniform(ids, seed)

                    def feed(job: _Job, X_block=X_block, y_block=y_block, folds=folds, held=held) -> None:
                        rows = np.flatnonzero(job.members(folds) & ~job.learner.held(held))
                        if len(rows):
                            job.learner.learn(take_rows(X_block, rows), y_block[rows], self._weights(job, y_block[rows]))

                    self._each(feed, active)
                self.passes += 1
                log.info("sgd: epoch %d of %d models, blocks of %d rows: %.1f s", epoch + 1, len(active), block_rows,
                         time.perf_counter() - started)

    def finish(self, jobs: list[_Job], predictions: dict[_Job, np.ndarray] | None = None,
               oof_models: list[IncrementalSGDClassifier] | None = None, oof: np.ndarray | None = None) -> None:
        """One pass in ``chunk_rows``: every job's held-out margins (then its calibrators), the
        class index each CV job predicts for its validation rows (into ``predictions[job]``), and
        fold ``k``'s probabilities from ``oof_models[k]`` for its validation rows (into ``oof``)."""
        predictions = predictions or {}
        n = self.reader.n_rows
        for start in range(0, n, self.chunk_rows):
            stop = min(n, start + self.chunk_rows)
            X_chunk = self.reader.rows(start, stop)
            ids = np.arange(start, stop, dtype=np.int64)
            y_chunk, folds = self.y[start:stop], self.fold_of[start:stop]
            uniform = {seed: holdout_uniform(ids, seed) for seed in {job.learner.seed for job in jobs}}

            def collect(job: _Job, X_chunk=X_chunk, y_chunk=y_chunk, folds=folds, uniform=uniform, start=start) -> None:
                learner = job.learner
                held = np.flatnonzero(job.members(folds) & learner.held(uniform[learner.seed]))
                if len(held):
                    job.held_margins.append(learner.decision(take_rows(X_chunk, held)))
                    job.held_y.append(y_chunk[held])
                if job in predictions:
                    valid = np.flatnonzero(folds == job.fold)
                    if len(valid):
                        labels = learner.classes[_label_index(learner.decision(take_rows(X_chunk, valid)))]
                        predictions[job][start + valid] = np.searchsorted(self.classes, labels)

            self._each(collect, jobs)
            for k, model in enumerate(oof_models or []):
                valid = np.flatnonzero(folds == k)
                if len(valid) and oof is not None:
                    oof[start + valid] = model.predict_proba(take_rows(X_chunk, valid))
        self.passes += 1

        def calibrate(job: _Job) -> None:
            margins = np.concatenate(job.held_margins) if job.held_margins else np.zeros(0)
            y_held = np.concatenate(job.held_y) if job.held_y else self.y[:0]
            job.held_margins, job.held_y = [], []
            job.learner.finish(margins, y_held, self.reader.shape[1])

        self._each(calibrate, jobs)


def balanced_class_weights(y: np.ndarray) -> np.ndarray:
    """Per class (np.unique order), the value ``compute_sample_weight("balanced", y)`` gives its
    rows: the same floats the in-memory search passes as sample weights."""
    from sklearn.utils.class_weight import compute_sample_weight

    _, first = np.unique(y, return_index=True)
    return compute_sample_weight("balanced", y)[first]


def cross_validate(training: StreamedTraining, candidates: list[tuple[IncrementalSGDClassifier, np.ndarray | None]],
                   n_folds: int) -> tuple[np.ndarray, list[list[IncrementalSGDClassifier]]]:
    """Every candidate (estimator, per-class weights or None) fitted on each fold's training rows
    in shared passes, and scored by macro-F1 on its validation rows: (scores, candidates x folds;
    the fitted fold models)."""
    y, fold_of = training.y, training.fold_of
    jobs = [[training.job(clone(estimator), weights, k) for k in range(n_folds)] for estimator, weights in candidates]
    flat = [job for fold_jobs in jobs for job in fold_jobs]
    training.train(flat)
    index_dtype = np.int8 if len(training.classes) < 128 else np.int32
    predicted = [np.zeros(len(y), dtype=index_dtype) for _ in candidates]  # 1 byte a row per candidate
    training.finish(flat, predictions={job: predicted[c] for c, fold_jobs in enumerate(jobs) for job in fold_jobs})
    scores = np.zeros((len(candidates), n_folds))
    for k in range(n_folds):
        valid = np.flatnonzero(fold_of == k)
        for c in range(len(candidates)):
            # what GridSearchCV's f1_macro scorer computes from the fold model's predict
            scores[c, k] = f1_score(y[valid], training.classes[predicted[c][valid]], average="macro")
    return scores, [[job.learner.estimator for job in fold_jobs] for fold_jobs in jobs]


def refit(training: StreamedTraining, estimator: IncrementalSGDClassifier, class_weight: np.ndarray | None,
          fold_models: list[IncrementalSGDClassifier]) -> np.ndarray:
    """Fit ``estimator`` on every row (in place); return the out-of-fold probabilities of
    ``fold_models`` (fold ``k``'s model for fold ``k``'s rows), collected in its calibration pass."""
    job = training.job(estimator, class_weight, None)
    training.train([job])
    oof = np.zeros((len(training.y), len(training.classes)))
    training.finish([job], oof_models=fold_models, oof=oof)
    return oof
