"""crm_common.context: the request id and actor travel with every RPC call,
and log lines of a worker carry its request id."""
import io
import json
import logging

import eventlet
from nameko.rpc import RpcProxy, rpc
from nameko.standalone.rpc import ServiceRpcProxy

from crm_common import logs
from crm_common.context import Context, RequestContext, RunAs, new_request_id
from crm_common.testing import wait_until

ACTOR = {"request_id": "req-123", "user_id": "user-7", "user_role": "manager",
         "team_id": "team-east", "language": "zh-CN"}


# --- RequestContext ---------------------------------------------------------

def test_from_context_data_reads_the_actor():
    context = RequestContext.from_context_data(dict(ACTOR, call_id_stack=["x.y.1"]))
    assert context.request_id == "req-123"
    assert context.user_id == "user-7"
    assert context.role == "manager"
    assert context.team_id == "team-east"
    assert context.language == "zh-CN"
    assert context.actor == {"user_id": "user-7", "role": "manager", "team_id": "team-east"}
    assert not context.is_admin


def test_to_context_data_round_trips_and_drops_missing_values():
    assert RequestContext.from_context_data(ACTOR).to_context_data() == ACTOR
    anonymous = RequestContext.from_context_data({})
    assert anonymous.language == "en"
    assert anonymous.to_context_data() == {"language": "en"}
    assert RequestContext.from_context_data({"language": None}).language == "en"


def test_system_context_is_admin_with_fresh_request_id():
    first, second = RequestContext.system(), RequestContext.system()
    assert first.role == "system" and first.is_admin
    assert first.request_id and first.request_id != second.request_id
    assert RequestContext.system("given").request_id == "given"
    assert RequestContext(role="admin").is_admin
    assert len(new_request_id()) == 32


# --- over real RPC -------------------------------------------------------

class CalleeService:
    name = "ctx_callee"
    context = Context()

    @rpc
    def whoami(self):
        return self.context.as_dict()


class CallerService:
    name = "ctx_caller"
    context = Context()
    callee = RpcProxy("ctx_callee")

    @rpc
    def ask_callee(self):
        return {"caller": self.context.as_dict(), "callee": self.callee.whoami()}


def test_callee_sees_the_callers_context_over_rpc(container_factory, rabbit_config):
    for service in (CalleeService, CallerService):
        container_factory(service, rabbit_config).start()

    with ServiceRpcProxy("ctx_caller", rabbit_config, context_data=ACTOR, timeout=10) as caller:
        seen = caller.ask_callee()

    expected = {"request_id": "req-123", "user_id": "user-7", "role": "manager",
                "team_id": "team-east", "language": "zh-CN", "client_ip": None, "api_key_id": None}
    assert seen["caller"] == expected
    assert seen["callee"] == expected


class ActingCallerService:
    name = "ctx_acting_caller"
    callee = RpcProxy("ctx_callee")
    run_as = RunAs()

    @rpc
    def ask_as_system(self):
        self.run_as(RequestContext.system("req-system"))
        return self.callee.whoami()


def test_run_as_makes_the_following_calls_carry_that_actor(container_factory, rabbit_config):
    for service in (CalleeService, ActingCallerService):
        container_factory(service, rabbit_config).start()

    with ServiceRpcProxy("ctx_acting_caller", rabbit_config, context_data=ACTOR, timeout=10) as caller:
        seen = caller.ask_as_system()

    # The caller's actor is replaced as a whole: nothing of the manager is left over.
    assert seen == {"request_id": "req-system", "user_id": None, "role": "system",
                    "team_id": None, "language": "en", "client_ip": None, "api_key_id": None}


def test_call_without_context_is_anonymous(container_factory, rabbit_config):
    container_factory(CalleeService, rabbit_config).start()
    with ServiceRpcProxy("ctx_callee", rabbit_config, timeout=10) as callee:
        seen = callee.whoami()
    assert seen == {"request_id": None, "user_id": None, "role": None, "team_id": None,
                    "language": "en", "client_ip": None, "api_key_id": None}


# --- request id in JSON log lines -------------------------------------------

CONCURRENT_REQUESTS = 3
logged_start = []  # tags of the workers that have logged their first line


class LoggingService:
    name = "ctx_logging"
    context = Context()

    @rpc
    def work(self, tag):
        log = logging.getLogger("crm_test.context")
        log.info("start %s", tag)
        logged_start.append(tag)
        # Every request logs its first line before any logs its second: the
        # workers' lines interleave for certain.
        wait_until(lambda: len(logged_start) == CONCURRENT_REQUESTS, 10,
                   message="every concurrent request to log its first line")
        log.info("end %s", tag)
        return tag


def test_json_log_lines_carry_the_workers_request_id(container_factory, rabbit_config):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter(service="ctx_logging"))
    logger = logging.getLogger("crm_test.context")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        container_factory(LoggingService, rabbit_config).start()

        def call(tag):
            context_data = {"request_id": f"req-{tag}", "user_id": "u1"}
            with ServiceRpcProxy("ctx_logging", rabbit_config, context_data=context_data,
                                 timeout=30) as proxy:  # longer than the workers' own deadline
                return proxy.work(tag)

        del logged_start[:]
        pool = eventlet.GreenPool()
        assert sorted(pool.imap(call, ["a", "b", "c"])) == ["a", "b", "c"]
        logger.info("outside any worker")
    finally:
        logger.removeHandler(handler)

    lines = stream.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(entries) == 7
    # Interleaved: all three first lines come before any second line.
    assert [entry["message"].split()[0] for entry in entries[:-1]] == ["start"] * 3 + ["end"] * 3
    for entry in entries[:-1]:
        tag = entry["message"].split()[-1]
        assert entry["request_id"] == f"req-{tag}"
        assert entry["service"] == "ctx_logging"
        assert entry["level"] == "info"
        assert entry["logger"] == "crm_test.context"
        assert entry["ts"].endswith("+00:00")
    # A worker's request id does not leak to code outside the worker.
    assert entries[-1]["message"] == "outside any worker"
    assert entries[-1]["request_id"] is None


def test_json_formatter_includes_exceptions_on_one_line():
    formatter = logs.JsonFormatter(service="svc")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("job",),
                                   exc_info=__import__("sys").exc_info())
    line = formatter.format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed job"
    assert entry["level"] == "error"
    assert "ValueError: boom" in entry["exception"]


def test_json_formatter_logs_refused_requests_without_traceback():
    from crm_common.errors import NotFound

    formatter = logs.JsonFormatter(service="svc")
    try:
        raise NotFound("no customer c1")
    except NotFound:
        record = logging.LogRecord("nameko.containers", logging.WARNING, __file__, 1,
                                   "(expected) error handling worker", (),
                                   exc_info=__import__("sys").exc_info())
    entry = json.loads(formatter.format(record))
    assert entry["error"] == "NotFound: no customer c1"
    assert "exception" not in entry
