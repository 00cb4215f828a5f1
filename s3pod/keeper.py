"""The daemon's upkeep thread: heartbeat, promote due retries, reap dead workers, sweep, tick."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

import redis

from s3po_client.redis_url import node_options

from .consumer import Consumer
from .reachability import RedisWatch
from .sharded import Claimed, ShardedConsumer

logger = logging.getLogger(__name__)

#: How often a worker looks for jobs in its own processing list that no thread holds.
SWEEP_INTERVAL_S = 2.0


class Keeper(threading.Thread):
    """Runs the periodic Redis chores of one worker, so no job thread ever waits on them.

    - heartbeat every ``heartbeat_timeout_s / 3``, so one lost beat never makes the worker
      look dead;
    - promote delayed jobs that are due, every ``promote_interval_s``;
    - reap the workers whose heartbeat expired, at start and every heartbeat interval, but
      only once Redis has been reachable for a heartbeat interval and up for a whole
      timeout (after an outage every heartbeat is old, the living workers' too);
    - sweep this worker's own processing list every 2 s for jobs no thread holds (a BLMOVE
      whose reply was lost when Redis went away) and put them back once seen twice;
    - call ``on_tick`` every ``tick_interval_s`` (systemd watchdog pings), Redis or not.
    """

    def __init__(
        self,
        queue: ShardedConsumer,
        watch: RedisWatch,
        held: Callable[[], Counter[Claimed]],
        *,
        heartbeat_timeout_s: float,
        promote_interval_s: float,
        tick_interval_s: float,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name="s3pod-keeper", daemon=True)
        self.queue = queue
        self.watch = watch
        self.held = held
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.heartbeat_interval_s = heartbeat_timeout_s / 3
        self.promote_interval_s = promote_interval_s
        self.tick_interval_s = tick_interval_s
        self.on_tick = on_tick
        self.stopped = threading.Event()
        self._suspects: set[Claimed] = set()

    def stop(self) -> None:
        """Ask the thread to end and wait for it."""
        self.stopped.set()
        if self.is_alive():
            self.join()

    def run(self) -> None:
        step_s = min(self.promote_interval_s, self.tick_interval_s, self.heartbeat_interval_s)
        chores: list[tuple[float, Callable[[], None]]] = [
            (self.heartbeat_interval_s, self.beat),
            (self.heartbeat_interval_s, self.reap),
            (min(SWEEP_INTERVAL_S, self.heartbeat_interval_s), self.sweep),
            (self.promote_interval_s, self.promote),
            (self.tick_interval_s, self.tick),
        ]
        due = [0.0] * len(chores)
        while not self.stopped.is_set():
            now = time.monotonic()
            for i, (every_s, chore) in enumerate(chores):
                if now >= due[i]:
                    due[i] = now + every_s
                    self._run(chore)
            self.stopped.wait(step_s)

    def _run(self, chore: Callable[[], None]) -> None:
        try:
            chore()
        except redis.RedisError as exc:
            self.watch.failed(exc)
        except Exception:  # noqa: BLE001 - a failed chore must not end the upkeep thread
            logger.exception("upkeep chore %s failed", getattr(chore, "__name__", chore))

    # -- chores --------------------------------------------------------------------------

    def beat(self) -> None:
        state = self.queue.heartbeat()
        self.watch.answered()
        if state == 2:
            logger.warning(
                "worker %s was silent for more than %.0fs: a reaper may have put its jobs back, "
                "so some may be uploaded twice",
                self.queue.worker_id,
                self.heartbeat_timeout_s,
            )

    def promote(self) -> None:
        moved = self.queue.promote()
        self.watch.answered()
        if moved:
            logger.debug("promoted %d delayed job(s)", moved)

    def reap(self) -> None:
        if self.watch.down or self.watch.up_for_s() < self.heartbeat_interval_s:
            return
        for shard in self.queue.shards:
            if self._up_for_a_timeout(shard):
                for worker_id, moved in shard.reap(self.heartbeat_timeout_s).items():
                    logger.warning(
                        "reaped worker %s (no heartbeat for %.0fs): put %d job(s) back on the queue %s",
                        worker_id,
                        self.heartbeat_timeout_s,
                        moved,
                        shard.keys.queue,
                    )
        self.watch.answered()

    def _up_for_a_timeout(self, shard: Consumer) -> bool:
        """Whether the Redis server holding ``shard`` (its node, on Redis Cluster) is up for a heartbeat timeout."""
        try:
            info = self.queue.client.info("server", **node_options(self.queue.client, shard.keys.workers))
        except redis.ResponseError:  # INFO disabled (some managed Redis): judge by heartbeats alone
            return True
        return float(info.get("uptime_in_seconds", 0)) >= self.heartbeat_timeout_s

    def sweep(self) -> None:
        listed = Counter(self.queue.held())
        held = self.held()
        excess = {claimed for claimed, n in listed.items() if n > held.get(claimed, 0)}
        for claimed in excess & self._suspects:
            if claimed.shard.put_back(claimed.raw):
                logger.warning("put back a job no thread holds (a claim whose reply was lost): %.200r", claimed.raw)
        self._suspects = excess - self._suspects
        self.watch.answered()

    def tick(self) -> None:
        if self.on_tick is not None:
            self.on_tick()
