"""The sgd family's classifier (pipeline/incremental.py): a fit on an in-memory matrix and a fit
streamed from X_train.npz block by block give the same bits; the blocks are random samples
whatever the file's order; the reader reads what load_npz reads; probabilities are calibrated;
the compiled inference path gives scikit-learn's bits for it."""

from __future__ import annotations

import io
import pickle
import zipfile

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils.class_weight import compute_sample_weight

from sentiment_pipeline.core.config import CleaningConfig, FeaturizeConfig, Params, load_params
from sentiment_pipeline.core.errors import ConfigError, DataError
from sentiment_pipeline.pipeline import incremental
from sentiment_pipeline.pipeline.features import build_vectorizer, save_csr
from sentiment_pipeline.pipeline.incremental import CsrNpzReader, IncrementalSGDClassifier, StreamedTraining
from sentiment_pipeline.pipeline.streaming import CsrNpzWriter
from sentiment_pipeline.pipeline.text import TextNormalizer


def sorted_by_label(n: int = 600, n_features: int = 60, n_classes: int = 3, seed: int = 0):
    """A sparse matrix whose rows are grouped by class, as the airline training split is: each
    class has its own informative columns."""
    rng = np.random.default_rng(seed)
    y = np.sort(rng.choice(n_classes, n, p=[0.6, 0.25, 0.15][:n_classes] / np.sum([0.6, 0.25, 0.15][:n_classes])))
    X = sp.random(n, n_features, density=0.15, format="csr", random_state=seed)
    signal = sp.csr_matrix((np.ones(n), (np.arange(n), y * 3 + rng.integers(0, 3, n))), shape=(n, n_features))
    return sp.csr_matrix(X + signal), y


def _streamed(tmp_path, X, y, chunk_rows: int, fold_of=None) -> StreamedTraining:
    save_csr(tmp_path / "X.npz", X)
    reader = CsrNpzReader(tmp_path / "X.npz")
    fold_of = np.zeros(len(y), dtype=np.int8) if fold_of is None else fold_of
    return StreamedTraining(reader, y, fold_of, chunk_rows, n_jobs=2)


def _state(model: IncrementalSGDClassifier) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("params", [dict(loss="log_loss"), dict(loss="hinge", average=True),
                                    dict(loss="modified_huber", calibration="isotonic")])
def test_a_streamed_fit_is_the_in_memory_fit_bit_for_bit(tmp_path, params):
    X, y = sorted_by_label()
    weights = compute_sample_weight("balanced", y)
    estimator = IncrementalSGDClassifier(epochs=3, block_rows=90, calibration_share=0.2, random_state=3, **params)
    in_memory = clone(estimator).fit(X, y, sample_weight=weights)
    training = _streamed(tmp_path, X, y, chunk_rows=130)  # chunks unrelated to the blocks
    try:
        streamed = clone(estimator)
        incremental.refit(training, streamed, incremental.balanced_class_weights(y), [])
        assert training.passes == 3 + 1  # epochs, calibration
    finally:
        training.close()
        training.reader.close()
    assert np.array_equal(in_memory.model_.coef_, streamed.model_.coef_)
    assert np.array_equal(in_memory.model_.intercept_, streamed.model_.intercept_)
    assert _state(in_memory) == _state(streamed)


def test_a_folds_fit_in_memory_is_its_streamed_fit(tmp_path):
    """GridSearchCV fits X[train] with row_ids=train, total_rows=n: the streamed CV's model of
    that fold, fed from the whole file, is the same."""
    X, y = sorted_by_label(n=500)
    fold_of = (np.arange(len(y)) * 7919 % 3).astype(np.int8)
    train = np.flatnonzero(fold_of != 1)
    estimator = IncrementalSGDClassifier(epochs=2, block_rows=70, calibration_share=0.2, random_state=0)
    weights = compute_sample_weight("balanced", y)
    in_memory = clone(estimator).fit(X[train], y[train], sample_weight=weights[train], row_ids=train, total_rows=len(y))
    training = _streamed(tmp_path, X, y, chunk_rows=64, fold_of=fold_of)
    try:
        scores, models = incremental.cross_validate(training, [(estimator, incremental.balanced_class_weights(y))], 3)
    finally:
        training.close()
        training.reader.close()
    assert _state(models[0][1]) == _state(in_memory)
    valid = fold_of == 1
    from sklearn.metrics import f1_score

    assert scores[0, 1] == f1_score(y[valid], in_memory.predict(X[valid]), average="macro")


def test_blocks_are_random_samples_whatever_the_file_order():
    ids = np.arange(200_000)  # a file sorted by label: the first 120,000 rows one class
    blocks = incremental.block_of(ids, 10, seed=42)
    counts = np.bincount(blocks, minlength=10)
    assert counts.min() > 16_000 and counts.max() < 24_000  # ~312 stripes of 64 rows each
    first_class = np.bincount(blocks[:120_000], minlength=10) / counts
    assert np.all(np.abs(first_class - 0.6) < 0.1)  # every block holds the classes as the file does
    assert np.array_equal(blocks[:64], np.full(64, blocks[0]))  # a stripe stays together: one read
    assert not np.array_equal(incremental.block_of(ids, 10, seed=43), blocks)  # seeded


def test_a_subset_of_rows_is_visited_in_the_order_the_whole_is():
    ids = np.arange(1000)
    whole = ids[incremental.row_order(ids, epoch=2, seed=7)]
    subset = ids[ids % 3 != 0]
    assert np.array_equal(subset[incremental.row_order(subset, epoch=2, seed=7)], whole[whole % 3 != 0])
    assert not np.array_equal(incremental.row_order(ids, 3, 7), incremental.row_order(ids, 2, 7))
    blocks = np.arange(40)
    assert np.array_equal(incremental.block_order(blocks[::2], 1, 7), [b for b in incremental.block_order(blocks, 1, 7)
                                                                         if b % 2 == 0])


def test_the_held_out_share_is_bounded_in_rows():
    X, y = sorted_by_label(n=2000)
    model = IncrementalSGDClassifier(epochs=1, calibration_share=0.3, calibration_rows=100, random_state=0).fit(X, y)
    assert 60 < model.calibration_rows_ < 140  # min(30%, 100 / 2,000 rows) = 5%: ~100 rows
    with pytest.raises(ConfigError, match="train.families.sgd.calibration_share"):
        IncrementalSGDClassifier(calibration_share=1e-9, random_state=0).fit(X, y)


@pytest.mark.parametrize("writer", ["save_csr", "CsrNpzWriter"])
def test_the_reader_reads_the_rows_load_npz_reads(tmp_path, writer):
    X, _ = sorted_by_label(n=300)
    path = tmp_path / "X.npz"
    if writer == "save_csr":
        save_csr(path, X)
    else:
        stream = CsrNpzWriter(X.shape[1], tmp_path)
        for start in range(0, 300, 70):
            stream.append(X[start:start + 70])
        stream.write(path)
    with CsrNpzReader(path) as reader:
        assert reader.shape == X.shape and reader.n_rows == 300
        for start, stop in [(0, 300), (0, 1), (17, 140), (299, 300), (50, 50)]:
            block = reader.rows(start, stop)
            expected = sp.load_npz(path)[start:stop]
            assert block.indices.dtype == np.int32 and block.indptr.dtype == np.int32
            assert (block != expected).nnz == 0 and np.array_equal(block.data, expected.tocsr().data)


def test_a_compressed_npz_is_refused_by_name(tmp_path):
    X, _ = sorted_by_label(n=50)
    sp.save_npz(tmp_path / "X.npz", X, compressed=True)
    with pytest.raises(DataError, match=r"compressed; .* re-run featurize"):
        CsrNpzReader(tmp_path / "X.npz")
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as archive:
        archive.writestr("data.npy", b"")
    with pytest.raises(DataError, match="not a CSR matrix"):
        CsrNpzReader(tmp_path / "other.npz")


@pytest.mark.parametrize("n_classes", [2, 3])
def test_probabilities_are_calibrated_and_labels_come_from_the_margins(n_classes):
    X, y = sorted_by_label(n=800, n_classes=n_classes)
    model = IncrementalSGDClassifier(epochs=5, block_rows=200, calibration_share=0.2, random_state=0)
    model.fit(X, y, sample_weight=compute_sample_weight("balanced", y))
    proba = model.predict_proba(X)
    assert proba.shape == (800, n_classes) and np.allclose(proba.sum(axis=1), 1.0)
    margins = model.decision_function(X)
    expected = (margins > 0).astype(int) if n_classes == 2 else np.argmax(margins, axis=1)
    assert np.array_equal(model.predict(X), model.classes_[expected])
    assert (model.predict(X) == y).mean() > 0.9
    clone(model)  # a scikit-learn estimator: get_params, clone, pickle
    assert np.array_equal(pickle.loads(pickle.dumps(model)).predict_proba(X), proba)


def test_a_refit_with_the_same_params_gives_the_same_bytes():
    X, y = sorted_by_label(n=400)
    models = [IncrementalSGDClassifier(epochs=2, block_rows=64, random_state=5).fit(X, y) for _ in range(2)]
    assert _state(models[0]) == _state(models[1])
    other = IncrementalSGDClassifier(epochs=2, block_rows=64, random_state=6).fit(X, y)
    assert not np.array_equal(other.model_.coef_, models[0].model_.coef_)


def test_the_grid_refuses_smote_and_a_column_filter_by_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  families:\n    sgd:\n      resampling: [class_weight, smote]\n")
    with pytest.raises(ConfigError, match=r"train.families.sgd.resampling: .*SMOTE"):
        load_params(path)
    path.write_text("train:\n  families:\n    sgd:\n      select_k: [1000]\n")
    with pytest.raises(ConfigError, match=r"train.families.sgd.select_k: .*every column"):
        load_params(path)
    assert "select__k" not in Params().train.families.sgd.as_param_grid()


def test_the_compiled_path_gives_the_sgd_models_bits(airline_sample):
    from sentiment_pipeline.inference.compiled import CompiledCalibratedSVM, CompiledEnsemble, compile_model
    from sentiment_pipeline.inference.predictor import _checked_compiled_path
    from sentiment_pipeline.pipeline.ensemble import EnsembleClassifier
    from sentiment_pipeline.pipeline.models import NaiveBayes

    normalizer = TextNormalizer(CleaningConfig(), frozenset())
    texts = [normalizer(t) for t in airline_sample["text"]]
    labels = airline_sample["label"].to_numpy()
    vectorizer = build_vectorizer(FeaturizeConfig(char_ngrams=True, min_df=1)).fit(texts[:200])
    X = vectorizer.transform(texts[:200])
    sgd = IncrementalSGDClassifier(epochs=5, block_rows=64, calibration_share=0.3, random_state=0).fit(X, labels[:200])
    model = Pipeline([("tfidf", vectorizer), ("select", "passthrough"), ("clf", sgd)])
    compiled = compile_model(model)
    assert isinstance(compiled, CompiledCalibratedSVM)
    held_out = texts[200:] + ["", "zzqx unknownword"]
    got_labels, got_proba = compiled.predict_with_proba(held_out)
    assert np.array_equal(got_labels, model.predict(held_out))
    assert np.array_equal(got_proba, model.predict_proba(held_out))
    assert _checked_compiled_path(model, normalizer) is not None  # the predictor's own probe check
    members = [Pipeline([("select", "passthrough"), ("clf", sgd)]),
               Pipeline([("select", "passthrough"), ("clf", NaiveBayes(alpha=0.3).fit(X, labels[:200]))])]
    ensemble = EnsembleClassifier(members=members)._set_fitted(members, labels[:200], None)
    voted = Pipeline([("tfidf", vectorizer), ("clf", ensemble)])
    compiled_vote = compile_model(voted)
    assert isinstance(compiled_vote, CompiledEnsemble) and [kind for kind, _ in compiled_vote.members] == ["linear"] * 2
    got_labels, got_proba = compiled_vote.predict_with_proba(held_out)
    assert np.array_equal(got_proba, voted.predict_proba(held_out))
    assert np.array_equal(got_labels, voted.predict(held_out))
