"""Readiness: does the broker answer, and does every service?"""
import eventlet

SERVICES = ("customers", "sales", "notifications", "reporting")


def check_readiness(pings, broker_is_up):
    """Run ``broker_is_up()`` and every ``pings[name]()`` at once.

    A ping that returns is up; one that raises (timeout, no queue, broker
    down) is down. The callables bound their own time, so the whole check
    takes as long as the slowest of them. Returns (report, all_up).
    """
    pool = eventlet.GreenPool(len(pings) + 1)
    broker = pool.spawn(broker_is_up)
    answers = {name: pool.spawn(_answers, ping) for name, ping in pings.items()}
    services = {name: "up" if thread.wait() else "down" for name, thread in answers.items()}
    broker_up = broker.wait()
    all_up = broker_up and all(state == "up" for state in services.values())
    report = {
        "status": "ready" if all_up else "degraded",
        "broker": "up" if broker_up else "down",
        "services": services,
    }
    return report, all_up


def _answers(ping):
    try:
        ping()
        return True
    except Exception:
        return False
