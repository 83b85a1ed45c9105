import logging
from pathlib import Path

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.config import load_params
from sentiment_pipeline.core.errors import PipelineError
from sentiment_pipeline.core.files import atomic_path
from sentiment_pipeline.review.report import default_base, gather, render

log = logging.getLogger(__name__)


class RegressionError(PipelineError):
    """The regression gate failed; the report was still written."""


def run(base: str | None, output: Path, wall_time: float | None, fail_on_regression: bool,
        params_file=paths.PARAMS) -> None:
    root = Path.cwd()
    settings = load_params(params_file).report
    base_rev = base or default_base(root)
    result = render(gather(root, base_rev, wall_time_seconds=wall_time,
                           max_f1_macro_drop=settings.max_f1_macro_drop,
                           curve_classes=settings.curve_classes))
    with atomic_path(output) as tmp:
        tmp.write_text(result.markdown, encoding="utf-8")
    log.info("report against %s written to %s", base_rev, output)
    if result.regression and fail_on_regression:
        raise RegressionError(f"regression gate: {result.regression}")
