"""Soak: a moderate, constant load for a long time, to find what only time
shows: memory that keeps growing, queues that never drain.

    LOADTEST_USERS               users to run (default 20)
    LOADTEST_SPAWN_RATE          users started per second until all run (default 5)
    LOADTEST_SECONDS             length of the run (default 3600)
    LOADTEST_WARMUP_SECONDS      first part of the run the memory check ignores:
                                 caches and pools fill up (default 300)
    LOADTEST_MAX_MEMORY_GROWTH   how much a service's resident memory may grow
                                 after warm-up, as a fraction (default 0.10)

Judged on the SLO over the whole run and on each service's memory, sampled
from its /metrics (see --metrics-urls): the run fails, naming the service,
when the line fitted through a service's memory after warm-up rises by more
than LOADTEST_MAX_MEMORY_GROWTH of where it started.
Without the LOADTEST_ variable, locust's own -u, -r and -t (as `make loadtest`
passes them: USERS, SPAWN_RATE, DURATION) are used, then the defaults.
"""
import os

from locust import LoadTestShape


class SoakShape(LoadTestShape):
    use_common_options = True

    def __init__(self):
        super().__init__()
        # Read by crmload.plugins: their presence makes it check memory.
        self.memory_warmup_seconds = float(os.environ.get("LOADTEST_WARMUP_SECONDS", "300"))
        self.max_memory_growth = float(os.environ.get("LOADTEST_MAX_MEMORY_GROWTH", "0.10"))

    def tick(self):
        options = self.runner.environment.parsed_options
        if self.get_run_time() >= float(os.environ.get("LOADTEST_SECONDS") or options.run_time or 3600):
            return None
        return (int(os.environ.get("LOADTEST_USERS") or options.num_users or 20),
                float(os.environ.get("LOADTEST_SPAWN_RATE") or options.spawn_rate or 5))
