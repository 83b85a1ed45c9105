from sentiment_pipeline.core import paths
from sentiment_pipeline.core.config import load_params
from sentiment_pipeline.core.files import read_csv, write_csv, write_json
from sentiment_pipeline.pipeline.cluster import stage_cluster
from sentiment_pipeline.pipeline.preprocess import preprocess, preprocess_stream


def run(params_file=paths.PARAMS) -> None:
    params = load_params(params_file)
    if params.preprocess.chunk_rows:  # data larger than memory: same files, in chunks
        # backend: dask cleans the chunks on a cluster (the same files); local opens nothing
        with stage_cluster("preprocess", params.preprocess) as cluster:
            report, distribution = preprocess_stream(paths.RAW_FILE, params.preprocess, paths.TRAIN_FILE,
                                                     paths.TEST_FILE, cluster=cluster)
    else:
        result = preprocess(read_csv(paths.RAW_FILE), params.preprocess)
        write_csv(result.train, paths.TRAIN_FILE)
        write_csv(result.test, paths.TEST_FILE)
        report, distribution = result.report, result.class_distribution
    write_json(report, paths.DATA_REPORT)
    write_json(distribution, paths.CLASS_DISTRIBUTION)
