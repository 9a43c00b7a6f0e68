"""Reporting's own metrics."""
from prometheus_client import Histogram

# From seconds (the normal case) to the hours a backlog after an outage can take.
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

EVENT_LAG = Histogram(
    "crm_reporting_event_lag_seconds",
    "Time from an event's occurred_at to the commit of its effect on the read models",
    ["event_type"], buckets=LAG_BUCKETS,
)
