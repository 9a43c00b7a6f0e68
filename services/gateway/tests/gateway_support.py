"""Helpers of the gateway tests (a module name of its own: several services'
test folders may share one pytest session)."""

from crm_common.testing import free_port, wait_until as wait_for  # noqa: F401 (the gateway tests import them from here)

JWT_SECRET = "gateway-tests-signing-secret-0123456789abcdef-0123456789abcdef-xyz"
ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "correct horse battery staple"
PROBLEM = "application/problem+json"





def assert_problem(response, status, code):
    """``response`` is an RFC 9457 problem with this status and code; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"].endswith("/" + code)
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


class GatewayClient:
    """The running gateway, and a requests-based way to talk to it."""

    def __init__(self, container, base_url):
        import requests

        self.container = container
        self.base_url = base_url
        self.http = requests.Session()

    def url(self, path):
        return self.base_url + path

    def request(self, method, path, token=None, headers=None, **kwargs):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, self.url(path), headers=headers, timeout=10, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def login(self, email=ADMIN_EMAIL, password=ADMIN_PASSWORD):
        response = self.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return response.json()

    def create_user(self, admin_token, role, team_id=None, email=None, password="a long enough password"):
        email = email or f"{role}-{team_id or 'none'}@example.com"
        response = self.post("/api/v1/users", token=admin_token, json={
            "email": email, "name": role.title(), "role": role, "team_id": team_id, "password": password})
        assert response.status_code == 201, response.text
        return response.json(), self.login(email, password)["access_token"]


