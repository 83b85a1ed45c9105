import logging

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.config import load_params
from sentiment_pipeline.core.files import write_csv, write_json
from sentiment_pipeline.pipeline.data import (
    check_counts,
    drop_dirty_rows,
    load_source,
    merge_sources,
    source_name,
    stream_source,
)

log = logging.getLogger(__name__)


def run(params_file=paths.PARAMS) -> None:
    params = load_params(params_file)
    config = params.download
    if config.chunk_rows:  # data larger than memory: same file and report, in chunks
        write_json(stream_source(config, params.train.cv_folds, paths.RAW_FILE), paths.DOWNLOAD_REPORT)
        return
    if config.sources is not None:  # several sources, with a `source` column
        frame, report = merge_sources(config, params.train.cv_folds)
        write_csv(frame, paths.RAW_FILE)
        write_json(report, paths.DOWNLOAD_REPORT)
        return
    frame = load_source(config)
    rows_in = len(frame)
    frame, dropped = drop_dirty_rows(frame)
    check_counts(frame, source_name(config), config.min_rows, params.train.cv_folds)
    log.info("%s: %d rows in, %d kept; dropped %s; labels %s", source_name(config), rows_in,
             len(frame), dropped, frame["label"].value_counts().to_dict())
    write_csv(frame, paths.RAW_FILE)
    write_json({"rows_in": rows_in, "dropped": dropped, "rows_out": len(frame),
                "class_counts": frame["label"].value_counts().sort_index().to_dict()},
               paths.DOWNLOAD_REPORT)
