"""The floor of `make bench`: the same stack as the CRM with no application logic.

Two nameko services, each in its own `nameko run` process as the gateway and the
customers service are: ``floor_echo`` answers an RPC ``echo``, and ``floor_http``
serves GET /echo by calling it. nameko, eventlet, werkzeug and RabbitMQ do the same
work per request as on the CRM's read path (an HTTP worker, one RPC round trip over
the broker, a JSON answer); no authentication, database or schema. The worker pools
are sized as the gateway's and the customers service's are, so the difference
between the floor and a CRM route is what the CRM adds.

    with running_floor(amqp_uri, workdir) as base_url:
        ...  # GET {base_url}/echo
"""
import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from nameko.rpc import RpcProxy, rpc
from nameko.web.handlers import http

HERE = Path(__file__).resolve().parent
NAMEKO = str(Path(sys.executable).with_name("nameko"))
# The CRM's own defaults (services/gateway/config.yaml, services/customers/config.yaml).
HTTP_MAX_WORKERS = 20
RPC_MAX_WORKERS = 10


class FloorEcho:
    name = "floor_echo"

    @rpc
    def echo(self, value):
        return value


class FloorHttp:
    name = "floor_http"

    echo_service = RpcProxy("floor_echo")

    @http("GET", "/echo")
    def echo(self, request):
        answer = self.echo_service.echo({"echo": request.args.get("value", "")})
        return 200, {"Content-Type": "application/json"}, json.dumps(answer)


@contextmanager
def running_floor(amqp_uri, workdir, port):
    """Both floor services running on ``amqp_uri`` (give it a vhost of its own); yields the
    HTTP service's base URL once /echo answers. Their logs go to ``workdir``."""
    from crm_common.testing import stop_process, wait_until
    import requests

    workdir = Path(workdir)
    processes = []
    try:
        for service, max_workers, address in (("FloorEcho", RPC_MAX_WORKERS, None),
                                              ("FloorHttp", HTTP_MAX_WORKERS, f"127.0.0.1:{port}")):
            config = workdir / f"floor_{service}.yaml"
            # JSON is YAML: no templating needed for three keys.
            config.write_text(json.dumps({"AMQP_URI": amqp_uri, "max_workers": max_workers,
                                          **({"WEB_SERVER_ADDRESS": address} if address else {})}))
            log = open(workdir / f"floor_{service}.log", "ab")
            processes.append(subprocess.Popen([NAMEKO, "run", "--config", str(config), f"floor_service:{service}"],
                                              cwd=HERE, stdout=log, stderr=subprocess.STDOUT))
            log.close()
        base_url = f"http://127.0.0.1:{port}"

        def answers():
            for process in processes:
                if process.poll() is not None:
                    raise AssertionError(f"a floor service exited; see {workdir}/floor_*.log")
            try:
                return requests.get(base_url + "/echo", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(answers, 60, message="floor /echo")
        yield base_url
    finally:
        for process in processes:
            stop_process(process)
