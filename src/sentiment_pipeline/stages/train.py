import numpy as np

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.config import load_params
from sentiment_pipeline.core.files import atomic_path, write_csv, write_joblib, write_json, write_timing
from sentiment_pipeline.pipeline.features import FeatureSet
from sentiment_pipeline.pipeline.train import check_streamable, train_families, train_families_streamed


def run(family: str | None = None, params_file=paths.PARAMS) -> None:
    """Every family train.families lists (or the one named), in one process: their searches
    share the cores and the resampled folds (see train.train_families). With train.chunk_rows
    set, X_train is read in blocks instead, for families that learn block by block (the same
    outputs: train.train_families_streamed)."""
    params = load_params(params_file)
    families = params.train.families.enabled() if family is None else (family,)
    grids = {name: params.train.families.enabled_grid(name) for name in families}
    param_grids = {name: (grid.as_param_grid(), grid.resampling) for name, grid in grids.items()}
    if params.train.chunk_rows is None:
        features = FeatureSet.load(paths.FEATURES_DIR)
        results = train_families(param_grids, features.X_train, features.y_train, params.train,
                                 params.featurize.resampling)
    else:
        check_streamable(families)  # before reading anything
        results = train_families_streamed(param_grids, paths.FEATURES_DIR / "X_train.npz",
                                          np.load(paths.FEATURES_DIR / "y_train.npy"), params.train,
                                          params.featurize.resampling)
    for name, result in results.items():
        with atomic_path(paths.candidate_dir(name)) as out:
            out.mkdir()
            write_joblib(result.best_estimator, out / "model.joblib")
            write_csv(result.cv_table, out / "cv_results.csv")
            np.save(out / "oof_proba.npy", result.oof_proba)
        write_json(result.summary, paths.cv_summary(name))
        write_timing(result.timing, paths.train_timing(name), paths.cv_summary(name))
