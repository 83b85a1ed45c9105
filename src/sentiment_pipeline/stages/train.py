import numpy as np

from sentiment_pipeline import paths
from sentiment_pipeline.config import load_params
from sentiment_pipeline.features import FeatureSet
from sentiment_pipeline.files import atomic_path, write_csv, write_joblib, write_json
from sentiment_pipeline.train import grid_search


def run(family: str, params_file=paths.PARAMS) -> None:
    params = load_params(params_file)
    grid = params.train.families.enabled_grid(family)
    features = FeatureSet.load(paths.FEATURES_DIR)
    result = grid_search(family, grid.as_param_grid(), features.X_train,
                         features.y_train, params.train, params.featurize.resampling,
                         strategies=grid.resampling)
    with atomic_path(paths.candidate_dir(family)) as out:
        out.mkdir()
        write_joblib(result.best_estimator, out / "model.joblib")
        write_csv(result.cv_table, out / "cv_results.csv")
        np.save(out / "oof_proba.npy", result.oof_proba)
    write_json(result.summary, paths.cv_summary(family))
    write_json(result.timing, paths.train_timing(family))
