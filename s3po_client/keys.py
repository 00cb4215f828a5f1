"""Every Redis key of one queue, derived from its prefix."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

DEFAULT_PREFIX = "s3po"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Every Redis key s3po uses, derived from one prefix (``{s3po}`` on Redis Cluster).

    >>> QueueKeys("s3po").processing("host-1")
    's3po:processing:host-1'
    """

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or any(c.isspace() for c in self.prefix):
            raise ConfigError(f"prefix must be a non-empty word, got {self.prefix!r}")

    @property
    def queue(self) -> str:
        """List of pending jobs; producers LPUSH, workers take the oldest (right) end."""
        return f"{self.prefix}:queue"

    def processing(self, worker_id: str) -> str:
        """List of the jobs one live worker holds."""
        return f"{self.prefix}:processing:{worker_id}"

    @property
    def workers(self) -> str:
        """Sorted set of worker ids scored by their last heartbeat (Redis server time): how workers are found."""
        return f"{self.prefix}:workers"

    @property
    def delayed(self) -> str:
        """Sorted set of jobs waiting for their next attempt, scored by due time."""
        return f"{self.prefix}:delayed"

    def stored(self, job_id: str) -> str:
        """Marker (with a TTL) set just before a job's local file is deleted, left to expire.

        If a daemon dies between deleting the file and acknowledging the job, the job runs
        again and finds its file gone; the marker says the object was stored already.
        """
        return f"{self.prefix}:stored:{job_id}"

    def upload(self, job_id: str) -> str:
        """The multipart upload a job has under way (JSON, with a TTL), recorded before its first part.

        Whoever runs the job next (this daemon after a restart, another after the reaper)
        resumes that upload or aborts it, so a killed daemon leaves no parts behind.
        """
        return f"{self.prefix}:upload:{job_id}"

    def watched(self, job_id: str) -> str:
        """Marker (with a TTL) that a spool watcher queued the file version ``job_id`` names.

        The id derives from the file's path and identity, so a rescan or a restart finds the
        marker and queues nothing, and a rewritten file (a new identity) is queued again.
        """
        return f"{self.prefix}:watched:{job_id}"

    @property
    def dead(self) -> str:
        """List of jobs that failed for good, newest first."""
        return f"{self.prefix}:dead"

    @property
    def dead_kept(self) -> str:
        """List of dead entries ``s3po dead retry`` took off the dead list and keeps, newest first.

        They go back to the dead list's tail, in order, when the retry ends (or when the next
        one begins, if the process running it died).
        """
        return f"{self.prefix}:dead:kept"
