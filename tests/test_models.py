import numpy as np
import pytest
from sklearn.svm import LinearSVC

from sentiment_pipeline.core.config import FeaturizeConfig
from sentiment_pipeline.core.errors import ConfigError
from sentiment_pipeline.pipeline.features import featurize
from sentiment_pipeline.pipeline.models import CalibratedLinearSVC, NaiveBayes


@pytest.fixture
def data(separable_texts):
    train, test = separable_texts.iloc[:90], separable_texts.iloc[90:]
    return featurize(train, test, FeaturizeConfig(min_df=1))[1]


@pytest.mark.parametrize("n_classes", [2, 3])
def test_calibrated_svm_predicts_from_its_margins_and_gives_probabilities(data, n_classes):
    keep = data.y_train < n_classes
    X, y = data.X_train[keep], data.y_train[keep]
    model = CalibratedLinearSVC(C=1.0, random_state=0).fit(X, y)
    proba = model.predict_proba(data.X_test)
    assert proba.shape == (data.X_test.shape[0], n_classes)
    assert np.allclose(proba.sum(axis=1), 1.0)
    margins = model.decision_function(data.X_test)
    expected = (margins > 0).astype(int) if n_classes == 2 else margins.argmax(axis=1)
    assert np.array_equal(model.predict(data.X_test), model.classes_[expected])
    # the margins are those of the calibration folds' SVMs, each a plain LinearSVC
    members = [m.estimator for m in model.model_.calibrated_classifiers_]
    assert len(members) == 3 and all(isinstance(m, LinearSVC) for m in members)


def test_calibrated_svm_gives_class_weights_to_the_svm_only(data):
    X, y = data.X_train, data.y_train
    weights = np.where(y == 0, 50.0, 1.0)
    model = CalibratedLinearSVC(random_state=0).fit(X, y, sample_weight=weights)
    svms = [m.estimator for m in model.model_.calibrated_classifiers_]
    assert all(svm.class_weight == {0: 50.0, 1: 1.0, 2: 1.0} for svm in svms)
    plain = CalibratedLinearSVC(random_state=0).fit(X, y)
    assert all(m.estimator.class_weight is None for m in plain.model_.calibrated_classifiers_)
    with pytest.raises(ConfigError, match="constant within each class"):
        CalibratedLinearSVC().fit(X, y, sample_weight=np.arange(len(y), dtype=float))


def test_naive_bayes_switches_between_multinomial_and_complement(data):
    multinomial = NaiveBayes(alpha=0.5).fit(data.X_train, data.y_train)
    complement = NaiveBayes(alpha=0.5, complement=True).fit(data.X_train, data.y_train)
    assert type(multinomial.model_).__name__ == "MultinomialNB"
    assert type(complement.model_).__name__ == "ComplementNB"
    assert multinomial.predict_proba(data.X_test).shape == (data.X_test.shape[0], 3)
    assert np.array_equal(complement.classes_, np.arange(3))


@pytest.mark.parametrize("family", ["logreg", "naive_bayes", "linear_svm"])
def test_without_smote_a_scikit_learn_pipeline_fits_as_imbalanced_learns(data, family):
    from imblearn.pipeline import Pipeline as ImbPipeline
    from sklearn.pipeline import Pipeline

    from sentiment_pipeline.core.config import ResamplingConfig
    from sentiment_pipeline.pipeline.models import build_pipeline

    weights = np.where(data.y_train == 0, 2.0, 1.0)
    ours = build_pipeline(family, ResamplingConfig(strategy="class_weight"), seed=0)
    assert type(ours) is Pipeline and ours.named_steps["resample"] == "passthrough"
    ours.fit(data.X_train, data.y_train, clf__sample_weight=weights)
    reference = ImbPipeline(build_pipeline(family, ResamplingConfig(strategy="class_weight"), seed=0).steps)
    reference.fit(data.X_train, data.y_train, clf__sample_weight=weights)
    assert np.array_equal(ours.predict_proba(data.X_test), reference.predict_proba(data.X_test))
    assert type(build_pipeline(family, ResamplingConfig(strategy="smote"), seed=0)) is ImbPipeline


def test_a_stage_without_smote_does_not_import_imbalanced_learn():
    import subprocess
    import sys

    code = ("import sys; from sentiment_pipeline.core.config import ResamplingConfig; "
            "from sentiment_pipeline.pipeline.models import build_pipeline; "
            "build_pipeline('logreg', ResamplingConfig(strategy='class_weight'), 0); "
            "import sentiment_pipeline.stages.train, sentiment_pipeline.stages.ensemble; "
            "print('imblearn' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
