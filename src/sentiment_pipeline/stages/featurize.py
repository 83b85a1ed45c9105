from sentiment_pipeline.core import paths
from sentiment_pipeline.core.config import load_params
from sentiment_pipeline.core.files import read_csv, write_joblib, write_json
from sentiment_pipeline.pipeline.cluster import stage_cluster
from sentiment_pipeline.pipeline.features import featurize, featurize_stream


def run(params_file=paths.PARAMS) -> None:
    params = load_params(params_file)
    if params.featurize.chunk_rows:  # splits larger than memory: same outputs, in chunks
        # backend: dask vectorises the chunks on a cluster (the same files); local opens nothing
        with stage_cluster("featurize", params.featurize) as cluster:
            vectorizer, summary = featurize_stream(paths.TRAIN_FILE, paths.TEST_FILE, params.featurize,
                                                   paths.FEATURES_DIR, cluster=cluster)
    else:
        train, test = read_csv(paths.TRAIN_FILE), read_csv(paths.TEST_FILE)
        vectorizer, features, summary = featurize(train, test, params.featurize)
        features.save(paths.FEATURES_DIR)
    write_joblib(vectorizer, paths.VECTORIZER_FILE)
    write_json(summary, paths.FEATURES_REPORT)
