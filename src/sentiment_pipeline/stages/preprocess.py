
from sentiment_pipeline import paths
from sentiment_pipeline.config import load_params
from sentiment_pipeline.files import read_csv, write_csv, write_json
from sentiment_pipeline.preprocess import preprocess


def run(params_file=paths.PARAMS) -> None:
    params = load_params(params_file)
    raw = read_csv(paths.RAW_FILE)
    result = preprocess(raw, params.preprocess)
    write_csv(result.train, paths.TRAIN_FILE)
    write_csv(result.test, paths.TEST_FILE)
    write_json(result.report, paths.DATA_REPORT)
    write_json(result.class_distribution, paths.CLASS_DISTRIBUTION)
