"""Where a stage's parallel work runs when its ``backend`` is ``dask``: a Dask distributed cluster.

The scheduler is the section's ``scheduler_address``, else ``$SENTIMENT_DASK_SCHEDULER``; with
neither, the stage starts a ``LocalCluster`` of ``dask_workers`` single-threaded processes on this
machine for its own run and closes it afterwards. Every failure to get a client is one line
naming the key to fix (a :class:`ConfigError`).

Workers need this package importable and, for the same bits, the environment a stage process
pins its kernels with (see kernels.py); a LocalCluster inherits both from the stage.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sentiment_pipeline.core.errors import ConfigError

if TYPE_CHECKING:  # distributed is the optional 'dask' extra: imported only when a stage uses it
    from distributed import Client

log = logging.getLogger(__name__)

DASK_SCHEDULER_ENV = "SENTIMENT_DASK_SCHEDULER"
# A scheduler that does not answer within this long is an error, not a hang (tests lower it).
CONNECT_TIMEOUT_SECONDS = 20


@dataclass(frozen=True)
class DaskCluster:
    """A connected client and where its workers are."""

    client: Client
    address: str
    # a LocalCluster this process started: its workers share this machine's disk (the data stages
    # then pass results through scratch files instead of the network)
    started_here: bool
    section: str  # whose keys chose it, for messages: preprocess, featurize, train


@contextmanager
def dask_client(section: str, scheduler_address: str | None, n_workers: int, *,
                as_default: bool = False) -> Iterator[DaskCluster]:
    """A client of the scheduler at ``scheduler_address`` (or $SENTIMENT_DASK_SCHEDULER), else of a
    LocalCluster of ``n_workers`` single-threaded processes started here and closed on leaving.
    ``section`` (``preprocess``, ``featurize``, ``train``) names the keys in error messages;
    ``as_default`` makes the client the one ``get_client()`` (and joblib's Dask backend) finds."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(f"{section}.backend: dask needs Dask's distributed scheduler: install the "
                          "'dask' extra (pip install 'sentiment-pipeline[dask]')") from None
    address = scheduler_address or os.environ.get(DASK_SCHEDULER_ENV) or None
    started_here = address is None
    with ExitStack() as stack:
        if address is None:
            # processes (not threads) like a real cluster's workers, one thread each: the stages'
            # work is pure Python and NumPy holding the GIL most of the time. The dashboard on a
            # free port; the logs silenced: a lost worker is the stage's one-line error, not a log page.
            cluster = stack.enter_context(LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                                       dashboard_address=":0", silence_logs=logging.CRITICAL))
            address = cluster.scheduler_address
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_SECONDS, set_as_default=as_default)
        except (OSError, ValueError) as exc:  # refused, timed out, or not an address: one line
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"{section}.backend: dask could not reach a scheduler at {address} "
                              f"({section}.scheduler_address / ${DASK_SCHEDULER_ENV}): {reason}") from None
        stack.enter_context(client)
        log.info("%s runs on the Dask cluster at %s (%d worker threads)", section, address,
                 sum(client.nthreads().values()))
        yield DaskCluster(client, address, started_here, section)


@contextmanager
def stage_cluster(section: str, config) -> Iterator[DaskCluster | None]:
    """The Dask client a data stage's ``backend: dask`` asks for, or None (``local``: processes of
    this machine, ``n_jobs`` of them). ``config`` is the stage's section (backend,
    scheduler_address, dask_workers)."""
    if config.backend != "dask":
        yield None
        return
    with dask_client(section, config.scheduler_address, config.dask_workers) as cluster:
        yield cluster
