import logging

import joblib
import numpy as np
from sklearn.pipeline import Pipeline

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.config import load_params
from sentiment_pipeline.core.files import atomic_path, write_csv, write_joblib, write_json, write_timing
from sentiment_pipeline.pipeline.ensemble import search_ensemble

log = logging.getLogger(__name__)
# what metrics/ensemble.json and models/ensemble hold when train.ensemble.members is []
NO_ENSEMBLE = "train.ensemble.members is []: no ensemble was built"


def run(params_file=paths.PARAMS) -> None:
    params = load_params(params_file)
    members = params.train.ensemble_members()
    if not members:  # select compares the trained families alone (stages/select.py)
        with atomic_path(paths.candidate_dir("ensemble")) as out:
            out.mkdir()
            write_json({"skipped": NO_ENSEMBLE}, out / "skipped.json")
        write_json({"family": "ensemble", "skipped": NO_ENSEMBLE}, paths.cv_summary("ensemble"))
        paths.train_timing("ensemble").unlink(missing_ok=True)
        log.info(NO_ENSEMBLE)
        return
    candidates = [joblib.load(paths.candidate_dir(m) / "model.joblib") for m in members]
    oof = [np.load(paths.candidate_dir(m) / "oof_proba.npy") for m in members]
    y_train = np.load(paths.FEATURES_DIR / "y_train.npy")
    result = search_ensemble(params.train.ensemble, params.train, candidates, oof, y_train)
    # the shape of every family's candidate: select -> resample -> clf (both pass through here)
    candidate = Pipeline([("select", "passthrough"), ("resample", "passthrough"), ("clf", result.estimator)])
    with atomic_path(paths.candidate_dir("ensemble")) as out:
        out.mkdir()
        write_joblib(candidate, out / "model.joblib")
        write_csv(result.cv_table, out / "cv_results.csv")
    write_json(result.summary, paths.cv_summary("ensemble"))
    write_timing(result.timing, paths.train_timing("ensemble"), paths.cv_summary("ensemble"))
