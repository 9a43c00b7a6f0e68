"""A bound on graceful shutdown.

On SIGTERM `nameko run` (2.14.1) stops the container gracefully: entrypoints
first (the RPC consumer is cancelled, so RabbitMQ sends this instance nothing
new, and its channel closes, which hands every unacknowledged request back to
the queue for the other instances), then it waits for the running workers,
then stops the dependencies. That wait has no limit: one stuck worker keeps
the process alive until someone sends SIGKILL. Here the container is killed
once CRM_SHUTDOWN_GRACE_SECONDS (default 10, below the 15 s `make down`
allows) have passed since stopping began; the requests such a worker held are
already back in the queue (nameko acks late), so killing loses none.
"""
import logging
import os

import eventlet
from nameko.extensions import Entrypoint

log = logging.getLogger(__name__)


def shutdown_grace_seconds():
    return float(os.environ.get("CRM_SHUTDOWN_GRACE_SECONDS", "10"))


class ShutdownDeadline(Entrypoint):
    """Starts the shutdown clock when the container stops its entrypoints.

    An entrypoint because nameko stops entrypoints first and dependencies only
    after the workers are done, too late for a deadline. It never fires a worker.
    """

    def stop(self):
        grace = shutdown_grace_seconds()
        log.info("stopping: finishing the requests in hand (at most %g s)", grace)
        eventlet.spawn_n(self._kill_after, grace)

    def _kill_after(self, grace):
        eventlet.sleep(grace)
        if self.container._died.ready():
            return
        log.warning("workers still running %g s after SIGTERM: killing the service", grace)
        self.container.kill()


shutdown_deadline = ShutdownDeadline.decorator
