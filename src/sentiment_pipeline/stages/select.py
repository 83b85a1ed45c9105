import joblib

from sentiment_pipeline import paths
from sentiment_pipeline.config import FAMILY_GRIDS
from sentiment_pipeline.files import atomic_path, file_md5, read_json, write_joblib, write_json
from sentiment_pipeline.select import choose_family, final_model, model_card


def run() -> None:
    summaries = [read_json(paths.cv_summary(family)) for family in FAMILY_GRIDS]
    best = choose_family(summaries)
    vectorizer = joblib.load(paths.VECTORIZER_FILE)
    candidate = joblib.load(paths.candidate_dir(best["family"]) / "model.joblib")
    classes = read_json(paths.FEATURES_DIR / "classes.json")
    card = model_card(best, summaries, classes, file_md5(paths.TRAIN_FILE),
                      n_features=len(vectorizer.get_feature_names_out()))
    with atomic_path(paths.FINAL_DIR) as out:
        out.mkdir()
        write_joblib(final_model(vectorizer, candidate), out / "model.joblib")
        write_json(card, out / "model_card.json")
    write_json({"family": best["family"], "cv_f1_macro_mean": best["cv_f1_macro_mean"],
                "cv_f1_macro_std": best["cv_f1_macro_std"]}, paths.SELECTION)
