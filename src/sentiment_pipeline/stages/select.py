import joblib
import pandas as pd

from sentiment_pipeline.core import kernels, paths
from sentiment_pipeline.core.config import load_params
from sentiment_pipeline.core.files import atomic_path, file_md5, read_json, write_joblib, write_json
from sentiment_pipeline.pipeline.features import n_features_out
from sentiment_pipeline.pipeline.select import choose_family, cv_comparison_rows, ensemble_details, final_model, model_card


def run(params_file=paths.PARAMS) -> None:
    # The families this run trained: a family dropped from train.families may have left files;
    # the ensemble unless train.ensemble.members is [] (its summary then says it was skipped).
    train = load_params(params_file).train
    families = (*train.families.enabled(), *(["ensemble"] if train.ensemble.members else []))
    summaries = [read_json(paths.cv_summary(family)) for family in families]
    best = choose_family(summaries)
    vectorizer = joblib.load(paths.VECTORIZER_FILE)
    candidate = joblib.load(paths.candidate_dir(best["family"]) / "model.joblib")
    classes = read_json(paths.FEATURES_DIR / "classes.json")
    card = model_card(best, summaries, classes, file_md5(paths.TRAIN_FILE),
                      n_features=n_features_out(vectorizer))
    if best["family"] == "ensemble":
        by_family = {s["family"]: s for s in summaries}
        table = pd.read_csv(paths.candidate_dir("ensemble") / "cv_results.csv")
        card["ensemble"] = ensemble_details(best, [by_family[m] for m in best["best_params"]["members"]], table)
    with atomic_path(paths.FINAL_DIR) as out:
        out.mkdir()
        write_joblib(final_model(vectorizer, candidate), out / "model.joblib")
        write_json(card, out / "model_card.json")
    # Which kernels computed these numbers: on another architecture check-lock names this first.
    write_json({"family": best["family"], "cv_f1_macro_mean": best["cv_f1_macro_mean"],
                "cv_f1_macro_std": best["cv_f1_macro_std"], "numerics": kernels.describe()},
               paths.SELECTION)
    write_json(cv_comparison_rows(summaries), paths.CV_COMPARISON)
