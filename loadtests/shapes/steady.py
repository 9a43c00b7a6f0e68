"""Steady load: a constant number of users for a fixed time.

    LOADTEST_USERS         users to run (default 20)
    LOADTEST_SPAWN_RATE    users started per second until all run (default 5)
    LOADTEST_SECONDS       length of the run, ramp-up included (default 300)

Judged on the SLO over the whole run (loadtests/slo.toml).
Without the LOADTEST_ variable, locust's own -u, -r and -t (as `make loadtest`
passes them: USERS, SPAWN_RATE, DURATION) are used, then the defaults.
"""
import os

from locust import LoadTestShape


class SteadyShape(LoadTestShape):
    use_common_options = True

    def tick(self):
        options = self.runner.environment.parsed_options
        if self.get_run_time() >= float(os.environ.get("LOADTEST_SECONDS") or options.run_time or 300):
            return None
        return (int(os.environ.get("LOADTEST_USERS") or options.num_users or 20),
                float(os.environ.get("LOADTEST_SPAWN_RATE") or options.spawn_rate or 5))
