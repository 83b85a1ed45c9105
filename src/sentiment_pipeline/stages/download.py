from sentiment_pipeline import paths
from sentiment_pipeline.config import load_params
from sentiment_pipeline.data import load_source
from sentiment_pipeline.files import write_csv


def run(params_file=paths.PARAMS) -> None:
    params = load_params(params_file)
    frame = load_source(params.download)
    write_csv(frame, paths.RAW_FILE)
