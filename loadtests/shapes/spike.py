"""Spike: a baseline load, a sudden burst of users, and the baseline again,
to see the system absorb the burst and recover.

    LOADTEST_USERS             baseline users (default 10)
    LOADTEST_SPIKE_USERS       users during the spike (default 5 x baseline)
    LOADTEST_SPAWN_RATE        users started per second for the baseline (default 5)
    LOADTEST_SPIKE_RATE        users started per second into the spike (default 50)
    LOADTEST_BASELINE_SECONDS  baseline before the spike (default 60)
    LOADTEST_SPIKE_SECONDS     how long the spike lasts (default 30)
    LOADTEST_RECOVERY_SECONDS  baseline after the spike (default 60)

Judged on the SLO over the whole run, spike included: a burst that the
system cannot take without slow or failed requests shows in p99 and errors.
Without LOADTEST_USERS or LOADTEST_SPAWN_RATE, locust's own -u and -r (as
`make loadtest` passes them: USERS, SPAWN_RATE) are used, then the defaults.
"""
import os

from locust import LoadTestShape


class SpikeShape(LoadTestShape):
    use_common_options = True

    def __init__(self):
        super().__init__()
        self.spike_rate = float(os.environ.get("LOADTEST_SPIKE_RATE", "50"))
        self.spike_starts = float(os.environ.get("LOADTEST_BASELINE_SECONDS", "60"))
        self.spike_ends = self.spike_starts + float(os.environ.get("LOADTEST_SPIKE_SECONDS", "30"))
        self.run_ends = self.spike_ends + float(os.environ.get("LOADTEST_RECOVERY_SECONDS", "60"))

    def tick(self):
        options = self.runner.environment.parsed_options
        users = int(os.environ.get("LOADTEST_USERS") or options.num_users or 10)
        run_time = self.get_run_time()
        if run_time >= self.run_ends:
            return None
        if self.spike_starts <= run_time < self.spike_ends:
            return int(os.environ.get("LOADTEST_SPIKE_USERS") or 5 * users), self.spike_rate
        # Stopping the spike's extra users is as abrupt as starting them.
        if run_time >= self.spike_ends:
            return users, self.spike_rate
        return users, float(os.environ.get("LOADTEST_SPAWN_RATE") or options.spawn_rate or 5)
