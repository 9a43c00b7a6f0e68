"""crm_common.web: answers leave at once (no Nagle delay), and every HTTP entrypoint shares that server."""
import socket

from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer

from crm_common.ops import OpsEndpoints
from crm_common.web import HttpEndpoint, NoDelayWebServer


def test_an_accepted_connection_sends_without_waiting_for_acknowledgements(monkeypatch):
    handled = []
    monkeypatch.setattr(WebServer, "process_request", lambda self, sock, address: handled.append(address))
    with socket.create_server(("127.0.0.1", 0)) as listener, \
            socket.create_connection(listener.getsockname()) as client:
        connection, address = listener.accept()
        with connection:
            assert connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            NoDelayWebServer().process_request(connection, address)
            assert connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert handled == [address]  # and nameko then serves the request as usual


def test_the_ops_endpoints_use_the_shared_server():
    # A second server class in one service would try to listen on the same port and fail at start.
    endpoints = [extension for method in (OpsEndpoints.ops_health, OpsEndpoints.ops_metrics)
                 for extension in getattr(method, ENTRYPOINT_EXTENSIONS_ATTR)]
    assert endpoints and all(isinstance(endpoint, HttpEndpoint) for endpoint in endpoints)
    assert all(isinstance(endpoint, HttpRequestHandler) for endpoint in endpoints)
    assert isinstance(HttpEndpoint.server, NoDelayWebServer)


def test_every_answer_of_a_plain_http_entrypoint_carries_the_security_headers(monkeypatch):
    from werkzeug.wrappers import Response

    from crm_common.web import add_security_headers

    monkeypatch.setattr(HttpRequestHandler, "handle_request",
                        lambda self, request: Response("ok", headers={"Content-Security-Policy": "mine"}))
    response = HttpEndpoint("GET", "/health").handle_request(None)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Content-Security-Policy"] == "mine"  # a route's own policy is kept
    assert add_security_headers(Response("x")).headers["Content-Security-Policy"].startswith("default-src 'none'")
