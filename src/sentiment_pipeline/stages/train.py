import numpy as np

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.config import load_params
from sentiment_pipeline.core.files import atomic_path, write_csv, write_joblib, write_json, write_timing
from sentiment_pipeline.pipeline.features import FeatureSet
from sentiment_pipeline.pipeline.train import train_families


def run(family: str | None = None, params_file=paths.PARAMS) -> None:
    """Every family train.families lists (or the one named), in one process: their searches
    share the cores and the resampled folds (see train.train_families)."""
    params = load_params(params_file)
    families = params.train.families.enabled() if family is None else (family,)
    grids = {name: params.train.families.enabled_grid(name) for name in families}
    features = FeatureSet.load(paths.FEATURES_DIR)
    results = train_families({name: (grid.as_param_grid(), grid.resampling) for name, grid in grids.items()},
                             features.X_train, features.y_train, params.train, params.featurize.resampling)
    for name, result in results.items():
        with atomic_path(paths.candidate_dir(name)) as out:
            out.mkdir()
            write_joblib(result.best_estimator, out / "model.joblib")
            write_csv(result.cv_table, out / "cv_results.csv")
            np.save(out / "oof_proba.npy", result.oof_proba)
        write_json(result.summary, paths.cv_summary(name))
        write_timing(result.timing, paths.train_timing(name), paths.cv_summary(name))
