"""The personal data routes over RPC to fake services: the export's fan-out (all or a 503),
its audit entry, the erase body checked before any service is asked, and admins only."""
from gateway_fakes import FakeCustomers, FakeNotifications, FakeSales
from gateway_support import assert_problem


def a_customer(gateway, token):
    created = gateway.post("/api/v1/customers", token=token, json={"kind": "person", "name": "Wang"})
    assert created.status_code == 201, created.text
    return created.json()["id"]


def test_the_export_assembles_every_service_and_is_audited(gateway, admin_token, start_fake, fake_calls):
    for fake in (FakeCustomers, FakeSales, FakeNotifications):
        start_fake(fake)
    customer_id = a_customer(gateway, admin_token)
    answer = gateway.get(f"/api/v1/customers/{customer_id}/export-personal-data", token=admin_token)
    assert answer.status_code == 200, answer.text
    export = answer.json()
    assert export["customer_id"] == customer_id and export["generated_at"]
    assert export["customers"]["customer"]["name"] == "Wang"
    assert export["sales"]["orders"][0]["customer_id"] == customer_id
    assert export["notifications"]["tasks"] == []
    assert answer.headers["Cache-Control"] == "no-store"
    audit = gateway.get("/api/v1/audit?action=customer.personal_data_exported", token=admin_token)
    assert audit.status_code == 200, audit.text
    assert [entry["entity_id"] for entry in audit.json()["items"]] == [customer_id]


def test_a_service_down_makes_the_export_503_not_partial(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeCustomers)
    start_fake(FakeSales)  # notifications is not running
    customer_id = a_customer(gateway, admin_token)
    answer = gateway.get(f"/api/v1/customers/{customer_id}/export-personal-data", token=admin_token)
    assert_problem(answer, 503, "service_unavailable")
    assert "notifications" in answer.json()["detail"]


def test_an_unknown_customer_is_404(gateway, admin_token, start_fake, fake_calls):
    for fake in (FakeCustomers, FakeSales, FakeNotifications):
        start_fake(fake)
    answer = gateway.get("/api/v1/customers/c-404/export-personal-data", token=admin_token)
    assert_problem(answer, 404, "not_found")
    assert "export_personal_data" not in [call["method"] for call in fake_calls if call["service"] == "sales"]


def test_erase_needs_a_reason_and_a_confirmation_before_any_service_is_asked(
        gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeCustomers)
    customer_id = a_customer(gateway, admin_token)
    url = f"/api/v1/customers/{customer_id}/erase"
    for body, field in (({"confirm": True}, "reason"), ({"reason": "asked"}, "confirm"),
                        ({"reason": "asked", "confirm": False}, "confirm"), ({"reason": "", "confirm": True}, "reason"),
                        ({"reason": "x" * 501, "confirm": True}, "reason"),
                        ({"reason": "asked", "confirm": True, "force": 1}, "force")):
        refused = gateway.post(url, token=admin_token, json=body)
        assert_problem(refused, 422, "validation_failed")
        assert field in refused.json()["errors"], (body, refused.json())
    assert "erase_customer" not in fake_calls.methods()
    erased = gateway.post(url, token=admin_token, json={"reason": "GDPR request 7", "confirm": True})
    assert erased.status_code == 200, erased.text
    assert erased.json()["customer_id"] == customer_id and erased.json()["erased_at"]
    assert fake_calls[-1]["args"] == (customer_id, "GDPR request 7")


def test_only_admins_export_or_erase(gateway, admin_token, start_fake, fake_calls):
    start_fake(FakeCustomers)
    customer_id = a_customer(gateway, admin_token)
    for role in ("manager", "sales", "support", "viewer"):
        _, token = gateway.create_user(admin_token, role, "east")
        assert_problem(gateway.get(f"/api/v1/customers/{customer_id}/export-personal-data", token=token),
                       403, "forbidden")
        assert_problem(gateway.post(f"/api/v1/customers/{customer_id}/erase", token=token,
                                    json={"reason": "asked", "confirm": True}), 403, "forbidden")
    assert "erase_customer" not in fake_calls.methods()
