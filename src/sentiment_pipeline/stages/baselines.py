from sentiment_pipeline.core import paths
from sentiment_pipeline.core.config import load_params
from sentiment_pipeline.core.files import read_csv, write_json
from sentiment_pipeline.pipeline.baselines import score_baselines
from sentiment_pipeline.pipeline.evaluate import require_columns


def run(params_file=paths.PARAMS) -> None:
    config = load_params(params_file).baselines
    test = read_csv(paths.TEST_FILE)
    require_columns(test, paths.TEST_FILE, ["label", "raw"])
    write_json(score_baselines(test, config), paths.BASELINES)
