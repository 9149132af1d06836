"""Dask for when one machine is not enough: a client to a cluster, and where its data lives.

`dask_client(None)` starts a `LocalCluster` of worker processes on 127.0.0.1 (its dashboard
off, nothing listening beyond loopback); `dask_client("tcp://host:8786")` connects to an
existing scheduler. The workers import funnelcast themselves, so on a real cluster every worker
needs the same funnelcast version installed, and the folders the commands read and write
(partitioned Parquet) must be visible to every worker under the same path.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scoring.errors import FunnelcastInputError

if TYPE_CHECKING:
    from distributed import Client

DEFAULT_LOCAL_WORKERS = 2
CONNECT_SECONDS = 10


@dataclass(frozen=True)
class Cluster:
    """A connected client, and whether funnelcast started the cluster (then every worker is on
    127.0.0.1 and LightGBM's ports can be pinned there)."""

    client: Client
    local: bool

    @property
    def workers(self) -> list[str]:
        return sorted(self.client.scheduler_info()["workers"])


@contextmanager
def dask_client(scheduler: str | None, workers: int = DEFAULT_LOCAL_WORKERS) -> Iterator[Cluster]:
    """A client to the scheduler at `scheduler`, or to a new local cluster of `workers`
    single-threaded worker processes on 127.0.0.1 (closed on exit).

    Raises:
        FunnelcastInputError: the scheduler cannot be reached, or `workers` is below 1.
    """
    from distributed import Client, LocalCluster

    quiet_lightgbm()
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_SECONDS)
        except (OSError, TimeoutError) as error:
            raise FunnelcastInputError(
                f"cannot reach the Dask scheduler at {scheduler}: {error}"
            ) from None
        with client:
            if not client.scheduler_info()["workers"]:
                raise FunnelcastInputError(f"the Dask scheduler at {scheduler} has no workers")
            client.run(quiet_lightgbm)
            yield Cluster(client, local=False)
        return
    if workers < 1:
        raise FunnelcastInputError("a local Dask cluster needs at least 1 worker")
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            # Their HTTP servers (metrics, the dashboard when bokeh is there) on loopback too.
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(quiet_lightgbm)
        yield Cluster(client, local=True)


def quiet_lightgbm() -> None:
    """Send LightGBM's messages (its Dask module's and its C library's, such as the network
    set-up lines) to the `lightgbm` logger, warnings and above only. Run on each worker
    (`client.run`) and in the process that drives the training."""
    import lightgbm

    logger = logging.getLogger("lightgbm")
    logger.setLevel(logging.WARNING)
    if not any(isinstance(f, _IgnoredThreads) for f in logger.filters):
        logger.addFilter(_IgnoredThreads())
    lightgbm.register_logger(logger)


class _IgnoredThreads(logging.Filter):
    """Drops "Parameter n_jobs will be ignored": each Dask worker's threads are its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "will be ignored" not in record.getMessage()


def free_loopback_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (held open together, then released)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(held)
            held.bind(("127.0.0.1", 0))
        return [held.getsockname()[1] for held in sockets]
    finally:
        for held in sockets:
            with suppress(OSError):
                held.close()


def rows_by_worker(client: Client, partitions: Sequence[Any]) -> dict[str, int]:
    """Rows of the persisted partitions (futures) held by each worker; their lengths are
    counted where they live, nothing is gathered."""
    holders = client.who_has(list(partitions))
    lengths = client.gather(client.map(len, list(partitions), pure=False))
    rows: dict[str, int] = {}
    for future, length in zip(partitions, lengths, strict=True):
        for worker in holders.get(future.key, ()):
            rows[worker] = rows.get(worker, 0) + int(length)
            break
    return rows
