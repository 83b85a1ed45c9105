# Pin the numeric kernels before anything else is imported: the restart it may need is then
# cheap (see kernels.py). cli.main pins too, for the console script.
from sentiment_pipeline.core import kernels

kernels.pin(restart=True)

from sentiment_pipeline.cli import main  # noqa: E402

main()
