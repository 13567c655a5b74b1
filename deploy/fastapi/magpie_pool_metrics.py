"""Report a FastAPI app's PostgreSQL pool statistics to Magpie over OTLP.

A database server sees connections, not the pools that hold them: how many of
a pool's connections are checked out, and how many requests are waiting for
one, is known only inside the app. This module registers asynchronous
OpenTelemetry instruments that read the pools each time the SDK exports
(every 10 s by default) and report them under the semantic conventions' names:

    db.client.connection.count            {connection}  db.client.connection.state = idle | used
    db.client.connection.max              {connection}
    db.client.connection.pending_requests {request}

each with db.client.connection.pool.name. Register any number of pools:

    from magpie_pool_metrics import PoolMetrics

    pool_metrics = PoolMetrics()                      # uses the global MeterProvider
    pool_metrics.add_psycopg2("analytics", analytics_service.pool)
    pool_metrics.add_asyncpg("rag", enterprise_rag.pool)

psycopg2's ThreadedConnectionPool does not queue: when it is exhausted,
getconn() raises PoolError at once, so no pending_requests is reported for
it. asyncpg's pool queues in acquire(); its waiters are counted from the
pool's internal queue, and pending_requests is left out if that ever changes.

Only the standard library and the OpenTelemetry API are imported here; the
pools are passed in, so neither psycopg2 nor asyncpg is a dependency.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, List, Optional, Tuple

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"

# (idle, used, max, pending or None) for one pool, read at export time.
Reader = Callable[[], Tuple[int, int, int, Optional[int]]]


def psycopg2_stats(pool) -> Tuple[int, int, int, Optional[int]]:
    """idle, used and max of a psycopg2 SimpleConnectionPool or
    ThreadedConnectionPool. They keep idle connections in `_pool` and
    checked-out ones in `_used`; ThreadedConnectionPool guards both with
    `_lock`, taken here so the figures are consistent."""
    lock = getattr(pool, "_lock", None)
    if lock is not None:
        with lock:
            idle, used = len(pool._pool), len(pool._used)
    else:
        idle, used = len(pool._pool), len(pool._used)
    return idle, used, int(pool.maxconn), None


def asyncpg_stats(pool) -> Tuple[int, int, int, Optional[int]]:
    """idle, used, max and waiting acquire() calls of an asyncpg Pool.
    `get_size()` counts open connections, `get_idle_size()` the idle ones."""
    size, idle = pool.get_size(), pool.get_idle_size()
    pending = None
    queue = getattr(pool, "_queue", None)
    getters = getattr(queue, "_getters", None)
    if getters is not None:
        pending = sum(1 for f in list(getters) if not f.done())
    return idle, max(size - idle, 0), pool.get_max_size(), pending


class PoolMetrics:
    """The three db.client.connection instruments over every registered pool."""

    def __init__(self, meter_provider: Optional[metrics.MeterProvider] = None) -> None:
        meter = metrics.get_meter("magpie_pool_metrics", "1.0", meter_provider=meter_provider)
        self._pools: List[Tuple[str, Reader]] = []
        self._lock = threading.Lock()
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            callbacks=[self._count],
            unit="{connection}",
            description="The number of connections that are currently in the state described by the state attribute.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.max",
            callbacks=[self._max],
            unit="{connection}",
            description="The maximum number of open connections allowed.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests",
            callbacks=[self._pending],
            unit="{request}",
            description="The number of current pending requests for an open connection.",
        )

    def add_psycopg2(self, name: str, pool) -> None:
        """Reports a psycopg2 SimpleConnectionPool or ThreadedConnectionPool as `name`."""
        self.add(name, lambda: psycopg2_stats(pool))

    def add_asyncpg(self, name: str, pool) -> None:
        """Reports an asyncpg Pool as `name`."""
        self.add(name, lambda: asyncpg_stats(pool))

    def add(self, name: str, reader: Reader) -> None:
        """Reports any pool through `reader`, which returns (idle, used, max, pending or None)."""
        with self._lock:
            self._pools.append((name, reader))

    def _read(self) -> Iterable[Tuple[str, Tuple[int, int, int, Optional[int]]]]:
        with self._lock:
            pools = list(self._pools)
        for name, reader in pools:
            try:
                yield name, reader()
            except Exception:  # A closed or half-built pool must not break the export.
                continue

    def _count(self, _options: CallbackOptions) -> Iterable[Observation]:
        for name, (idle, used, _max, _pending) in self._read():
            yield Observation(idle, {POOL_NAME: name, STATE: "idle"})
            yield Observation(used, {POOL_NAME: name, STATE: "used"})

    def _max(self, _options: CallbackOptions) -> Iterable[Observation]:
        for name, (_idle, _used, maximum, _pending) in self._read():
            yield Observation(maximum, {POOL_NAME: name})

    def _pending(self, _options: CallbackOptions) -> Iterable[Observation]:
        for name, (_idle, _used, _max, pending) in self._read():
            if pending is not None:
                yield Observation(pending, {POOL_NAME: name})


def install_otlp_meter_provider(
    endpoint: str = "http://127.0.0.1:4318/v1/metrics",
    service_name: str = "chatbot-api",
    export_interval_millis: int = 10_000,
):
    """Sets a global MeterProvider that exports to Magpie's OTLP/HTTP receiver.
    Skip this when the app already configures OpenTelemetry (for example with
    opentelemetry-instrument and OTEL_EXPORTER_OTLP_ENDPOINT)."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=endpoint), export_interval_millis=export_interval_millis
    )
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": service_name}))
    metrics.set_meter_provider(provider)
    return provider
