import numpy as np
import pytest

from sentiment_pipeline.core.config import FeaturizeConfig, ResamplingConfig
from sentiment_pipeline.core.errors import ConfigError
from sentiment_pipeline.pipeline.features import FeatureSet, featurize, resampled_class_counts


def split(frame):
    return frame.iloc[: len(frame) * 3 // 4].reset_index(drop=True), frame.iloc[len(frame) * 3 // 4 :].reset_index(drop=True)


def test_vectorizer_is_fitted_on_training_texts_only(separable_texts):
    train, test = split(separable_texts)
    test = test.assign(text=test["text"] + " testonlyword")
    vectorizer, features, _ = featurize(train, test, FeaturizeConfig(min_df=1))
    vocabulary = set(vectorizer.get_feature_names_out())
    assert "testonlyword" not in vocabulary
    assert features.X_train.shape[0] == len(train) and features.X_test.shape[0] == len(test)
    assert features.X_train.shape[1] == features.X_test.shape[1] == len(vocabulary)


def test_char_ngrams_add_columns_and_tokens_keep_contractions(separable_texts):
    train, test = split(separable_texts)
    train = train.assign(text=train["text"] + " didn't _url_")
    words, _, _ = featurize(train, test, FeaturizeConfig(min_df=1))
    both, features, summary = featurize(train, test, FeaturizeConfig(min_df=1, char_ngrams=True))
    assert {"didn't", "_url_"} <= set(words.get_feature_names_out())
    assert summary["n_features"] > len(words.get_feature_names_out())
    assert features.X_train.shape[1] == summary["n_features"]


def test_labels_are_encoded_in_sorted_order(separable_texts):
    train, test = split(separable_texts)
    _, features, summary = featurize(train, test, FeaturizeConfig())
    assert features.classes == ["negative", "neutral", "positive"]
    assert np.array_equal(np.asarray(features.classes)[features.y_train], train["label"].to_numpy())
    assert summary["resampling"]["class_counts_before"] == train["label"].value_counts().sort_index().to_dict()


def test_smote_plan_grows_minorities_to_the_majority():
    counts = {"a": 50, "b": 20, "c": 10}
    assert resampled_class_counts(counts, ResamplingConfig(strategy="smote")) == {"a": 50, "b": 50, "c": 50}
    assert resampled_class_counts(counts, ResamplingConfig(strategy="class_weight")) == counts
    with pytest.raises(ConfigError, match="k_neighbors=10"):
        resampled_class_counts(counts, ResamplingConfig(strategy="smote", k_neighbors=10))


def test_feature_set_round_trip(tmp_path, separable_texts):
    train, test = split(separable_texts)
    _, features, _ = featurize(train, test, FeaturizeConfig())
    features.save(tmp_path / "features")
    loaded = FeatureSet.load(tmp_path / "features")
    assert (loaded.X_train != features.X_train).nnz == 0
    assert np.array_equal(loaded.y_test, features.y_test) and loaded.classes == features.classes
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == sorted(FeatureSet.FILES)


def test_fitted_vectorizer_carries_no_per_process_state(separable_texts):
    # an id() cached by scikit-learn would make equal fits pickle to different bytes
    train, test = split(separable_texts)
    vectorizer, _, _ = featurize(train, test, FeaturizeConfig(char_ngrams=True))
    for _, part in vectorizer.transformer_list:
        assert "_stop_words_id" not in vars(part)
    vectorizer.transform(["still works"])


def test_impossible_document_frequency_bounds_name_the_params(separable_texts):
    train, test = split(separable_texts)
    with pytest.raises(ConfigError, match="featurize.min_df=500"):
        featurize(train, test, FeaturizeConfig(min_df=500))


def test_feature_files_carry_no_zip64_header_so_their_bytes_do_not_depend_on_the_python_release(tmp_path):
    """scipy's save_npz forces ZIP64 headers on every member, and zipfile wrote those differently
    in CPython 3.11.2 and 3.11.7 (another data/features hash, a dirty dvc.lock on Debian's Python).
    Members this small get none; the matrix reads back as it was."""
    import struct
    import zipfile

    import scipy.sparse as sp

    from sentiment_pipeline.pipeline.features import save_csr

    matrix = sp.random(40, 25, density=0.2, format="csr", random_state=0, dtype=np.float64)
    save_csr(tmp_path / "X.npz", matrix)
    assert (sp.load_npz(tmp_path / "X.npz") != matrix).nnz == 0
    raw = (tmp_path / "X.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "X.npz") as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == ["indices.npy", "indptr.npy", "format.npy", "shape.npy", "data.npy"]
        for info in infos:
            assert info.extra == b""  # no ZIP64 extra field in the central directory
            name_length, extra_length = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
            assert extra_length == 0  # nor in the local header
