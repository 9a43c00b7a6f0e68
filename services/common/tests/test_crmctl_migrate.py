"""crmctl migrate without a running system: files, encodings, mapping, checks, and the report's figures
against a fake API (the end-to-end run against the real one is tests/test_legacy_migration.py)."""
import json
import uuid
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
import requests

from crm_common.crmctl import migrate as m

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "migration-example"


def test_decode_utf8_bom_and_gbk():
    text = "客户编号,客户名称\nC1,上海远航\n"
    assert m.decode(b"\xef\xbb\xbf" + text.encode())[0] == text
    assert m.decode(text.encode()) == (text, "utf-8")
    assert m.decode(text.encode("gbk")) == (text, "gbk")
    assert m.decode(text.encode("gbk"), "gbk") == (text, "gbk")


def test_read_rows_csv_semicolon_and_xlsx(tmp_path):
    (tmp_path / "a.csv").write_bytes("编号;名称\nC1;甲\n\nC2;乙\n".encode("gbk"))
    rows, encoding = m.read_rows(tmp_path / "a.csv")
    assert encoding == "gbk"
    assert rows == [(2, {"编号": "C1", "名称": "甲"}), (4, {"编号": "C2", "名称": "乙"})]
    book = openpyxl.Workbook()
    book.active.append(["编号", "数量"])
    book.active.append(["C1", 3.0])
    book.save(tmp_path / "b.xlsx")
    assert m.read_rows(tmp_path / "b.xlsx") == ([(2, {"编号": "C1", "数量": "3"})], "xlsx")


def test_mapping_translates_and_defaults():
    mapping = m.load_mapping(EXAMPLE / "mapping.yaml")
    spec = mapping["entities"]["customers"]
    fields = m.apply_mapping("customers", spec, {"客户编号": "C9", "客户名称": " 王芳 ", "类型": "个人",
                                                  "状态": "2", "等级": "甲", "手机": "138-0013-8000"})
    assert fields == {"_id": "C9", "name": "王芳", "kind": "person", "lifecycle_stage": "prospect", "tier": "A",
                      "phones": "138-0013-8000"}
    assert m.check_row("customers", fields, "CN") == []
    assert fields["phones"] == ["+8613800138000"]
    body = m.customer_body(fields)
    assert body["external_id"] == "C9" and body["contact"] == {"phones": ["+8613800138000"]}


def test_mapping_errors():
    with pytest.raises(m.MappingError):
        m.check_mapping({"entities": {"invoices": {"id": "x", "columns": {}}}})
    with pytest.raises(m.MappingError):
        m.check_mapping({"entities": {"customers": {"columns": {}}}})


def test_check_row_problems():
    fields = {"_id": "C1", "name": "x", "kind": "person", "phones": "12345", "lifecycle_stage": "9"}
    problems = dict(m.check_row("customers", fields, "CN"))
    assert "not a valid phone number" in problems["phones"]
    assert "not one of" in problems["lifecycle_stage"]
    fields = {"_id": "K1", "customer": "C1", "title": "t", "value": "1,200.5", "currency": "CNY",
              "start_date": "2024/04/01", "end_date": "2024-03-01"}
    assert m.check_row("contracts", fields, "CN") == [("end_date", "must be after start_date")]
    assert fields["value"] == "1200.5" and fields["start_date"] == "2024-04-01"
    assert m.check_row("products", {"_id": "P", "sku": "P", "name": "n", "list_price": "abc", "currency": "CNY"},
                       "CN") == [("list_price", "'abc' is not a number")]


def test_checksum_is_order_independent():
    assert m.checksum({"a": [1], "b": [2]}) == m.checksum({"b": [2], "a": [1]})
    assert m.checksum({"a": [1]}) != m.checksum({"a": [2]})


# --- the run against a fake API -------------------------------------------------------------

class Answer:
    def __init__(self, status, body, headers=None):
        self.status_code, self.body, self.headers = status, body, headers or {}
        self.text = json.dumps(body)

    def json(self):
        return self.body


class FakeApi:
    """Just enough of the gateway: creates, lists, Idempotency-Key replays, duplicates by phone, and an
    order's way from draft to confirmed, paid (by payments), fulfilled or cancelled."""

    def __init__(self):
        self.records = {"customers": {}, "products": {}, "contacts": {}, "followups": {}, "orders": {},
                        "contracts": {}}
        self.keys = {}
        self.posts = 0
        self.steps = []        # (order id, step) of every order step that changed an order
        self.lose_answer_after = None  # an order step whose answer is lost once it is done

    ORDER_STEPS = {"confirm": (("draft",), "confirmed"), "fulfil": (("paid",), "fulfilled"),
                   "cancel": (("draft", "confirmed"), "cancelled"), "payments": (("confirmed",), None)}

    def order_step(self, order, step, body, key):
        if key in self.keys:
            return Answer(201, self.keys[key], {"Idempotent-Replayed": "true"})
        allowed, status = self.ORDER_STEPS[step]
        if order["status"] not in allowed:
            return Answer(409, {"detail": f"Order is {order['status']}", "current_status": order["status"]})
        if step == "payments":
            amount = Decimal(body["amount"])
            if not 0 < amount <= Decimal(order["outstanding"]):
                return Answer(422, {"errors": {"amount": ["More than the outstanding amount."]}})
            order["paid_amount"] = str(Decimal(order["paid_amount"]) + amount)
            order["outstanding"] = str(Decimal(order["total"]) - Decimal(order["paid_amount"]))
            status = "paid" if Decimal(order["outstanding"]) == 0 else "confirmed"
            self.keys[key] = answer = {"amount": body["amount"], "method": body["method"],
                                       "reference": body["reference"], "order": dict(order, status=status)}
        order["status"] = status
        self.steps.append((order["id"], step))
        if step == self.lose_answer_after:
            raise requests.ConnectionError("the answer was lost")
        return Answer(201, answer) if step == "payments" else Answer(200, dict(order))

    def client(self, *args, **kwargs):
        return self

    def get_all(self, path, params=None):
        return list(self.records[path.strip("/")].values())

    def request(self, method, path, json=None, headers=None, params=None):
        parts = path.strip("/").split("/")
        if method == "GET":
            if parts[0] == "orders":
                return Answer(200, dict(self.records["orders"][parts[1]]))
            if parts[0] == "followups":
                return Answer(200, self.records["followups"][parts[1]])
            return Answer(200, {"items": [c for c in self.records["contacts"].values()
                                          if c["customer_id"] == parts[1]]})
        self.posts += 1
        key = headers["Idempotency-Key"]
        if parts[0] == "orders" and len(parts) == 3:
            return self.order_step(self.records["orders"][parts[1]], parts[2], json, key)
        if key in self.keys:
            return Answer(201, self.keys[key], {"Idempotent-Replayed": "true"})
        entity = parts[-1]
        record = dict(json, id=str(uuid.uuid4()))
        if entity == "customers":
            phones = (json.get("contact") or {}).get("phones", [])
            for other in self.records["customers"].values():
                if set(phones) & set(other["contact"].get("phones", [])):
                    return Answer(409, {"detail": "Looks like a duplicate", "candidates": [{"id": other["id"]}]})
            record.setdefault("contact", {})
        if entity in ("contacts", "followups"):
            record["customer_id"] = parts[1]
        if entity == "orders":
            total = sum(Decimal(line["quantity"]) * Decimal(line.get("unit_price") or
                                                            self.records["products"][line["product_id"]]["list_price"])
                        for line in json["lines"])
            total = total.quantize(Decimal("0.01"))
            record.update(total=str(total), status="draft", paid_amount="0.00", outstanding=str(total))
        self.records[entity][record["id"]] = record
        self.keys[key] = record
        return Answer(201, record)


def write_csv(folder, name, header, rows, encoding="utf-8"):
    lines = [",".join(header)] + [",".join(row) for row in rows]
    (folder / name).write_bytes(("\n".join(lines) + "\n").encode(encoding))


@pytest.fixture
def legacy(tmp_path):
    write_csv(tmp_path, "customers.csv", ["客户编号", "客户名称", "类型", "手机", "状态"], [
        ["C1", "甲公司", "企业", "13800138001", "1"],
        ["C2", "乙公司", "企业", "13800138002", "3"],
        ["C3", "丙", "个人", "12345", "2"],            # bad phone: rejected
        ["C4", "丁公司", "企业", "138-0013-8001", "1"],  # same phone as C1: duplicate
        ["C2", "乙公司again", "企业", "13800138009", "1"],  # same legacy id: duplicate
    ], encoding="gbk")
    write_csv(tmp_path, "products.csv", ["产品编号", "产品名称", "单价"], [["SKU-1", "许可", "100"]])
    write_csv(tmp_path, "orders.csv", ["订单编号", "客户编号", "总额"], [
        ["O1", "C1", "200.00"], ["O2", "C99", "100"], ["O3", "C2", "100"]])   # O2 orphan; O3 unknown product
    write_csv(tmp_path, "order_lines.csv", ["订单编号", "产品编号", "数量", "单价", "折扣"], [
        ["O1", "SKU-1", "2", "", ""], ["O2", "SKU-1", "1", "", ""], ["O3", "SKU-9", "1", "", ""]])
    write_csv(tmp_path, "followups.csv", ["记录编号", "客户编号", "方式", "内容", "结果", "时间"], [
        ["F1", "C1", "电话", "问候", "", "2024-01-02 10:00"], ["F2", "C3", "电话", "问候", "", "2024-01-02"]])
    return tmp_path


def run(folder, api, monkeypatch, **kwargs):
    monkeypatch.setattr(m, "Client", api.client)
    return m.migrate(folder, m.load_mapping(EXAMPLE / "mapping.yaml"), "http://fake", api_key="k",
                     backup=False, **kwargs)


def figures(report):
    return {entity: (e["source_rows"], e["migrated"], e["already_present"], len(e["rejected"]), len(e["orphans"]),
                     len(e["duplicates"])) for entity, e in report["entities"].items()}


def test_report_figures_rerun_and_resume(legacy, monkeypatch):
    api = FakeApi()
    dry = run(legacy, api, monkeypatch, dry_run=True)
    assert api.posts == 0 and not (legacy / "migration-state.json").exists()
    expected = {"customers": (5, 2, 0, 1, 0, 2), "products": (1, 1, 0, 0, 0, 0), "followups": (2, 1, 0, 1, 0, 0),
                "orders": (3, 1, 0, 1, 1, 0), "order_lines": (3, 1, 0, 1, 1, 0)}
    assert figures(dry) == expected
    assert not dry["reconciled"]

    with pytest.raises(m.MigrationInterrupted):
        run(legacy, api, monkeypatch, stop_after=2, workers=1)   # the second customer is created, its state not saved
    assert len(json.loads((legacy / "migration-state.json").read_text())["customers"]) == 1
    report = run(legacy, api, monkeypatch)
    assert figures(report)["customers"] == (5, 0, 2, 1, 0, 2)
    assert figures(report)["orders"] == (3, 1, 0, 1, 1, 0)
    assert len(api.records["customers"]) == 2 and len(api.records["orders"]) == 1
    for entity, e in report["entities"].items():
        if entity != "order_lines":
            assert e["checksum"]["equal"] is True, entity
    assert report["entities"]["customers"]["rejected"][0]["row"] == 4
    assert "C99" in report["entities"]["orders"]["orphans"][0]["reason"]
    assert "SKU-9" in report["entities"]["order_lines"]["orphans"][0]["reason"]
    assert not report["reconciled"]
    assert "NOT RECONCILED" in m.format_report(report)

    again = run(legacy, api, monkeypatch)
    assert all(e["migrated"] == 0 for e in again["entities"].values())
    assert figures(again)["orders"] == (3, 0, 1, 1, 1, 0)
    assert len(api.records["customers"]) == 2 and len(api.records["followups"]) == 1

    # the state file lost: customers and products are found in the CRM, the rest replayed by Idempotency-Key
    (legacy / "migration-state.json").unlink()
    lost = run(legacy, api, monkeypatch)
    assert figures(lost) == figures(again)
    assert sum(len(v) for v in api.records.values()) == 5


def test_clean_source_reconciles(tmp_path, monkeypatch):
    write_csv(tmp_path, "customers.csv", ["客户编号", "客户名称", "手机"], [["C1", "甲", "13800138001"]])
    write_csv(tmp_path, "orders.csv", ["订单编号", "客户编号", "总额"], [["O1", "C1", "3"]])
    write_csv(tmp_path, "order_lines.csv", ["订单编号", "数量", "单价"], [["O1", "1", "3"]])
    (tmp_path / "mapping.json").write_text(json.dumps({"entities": {
        "customers": {"id": "客户编号", "columns": {"客户名称": "name", "手机": "phones"}, "defaults": {"kind": "company"}},
        "orders": {"id": "订单编号", "columns": {"客户编号": "customer", "总额": "total"}},
        "order_lines": {"columns": {"订单编号": "order", "数量": "quantity", "单价": "unit_price"},
                        "defaults": {"description": "legacy line"}}}}))
    api = FakeApi()
    monkeypatch.setattr(m, "Client", api.client)
    report = m.migrate(tmp_path, m.load_mapping(tmp_path / "mapping.json"), "http://fake", api_key="k", backup=False)
    assert report["reconciled"], m.format_report(report)
    # a total that does not match is a checksum difference: not reconciled
    write_csv(tmp_path, "orders.csv", ["订单编号", "客户编号", "总额"], [["O1", "C1", "4"]])
    report = m.migrate(tmp_path, m.load_mapping(tmp_path / "mapping.json"), "http://fake", api_key="k", backup=False)
    assert report["entities"]["orders"]["checksum"]["differing_ids"] == ["O1"]
    assert not report["reconciled"]


def test_same_legacy_id_after_a_rejected_row_is_still_a_duplicate(tmp_path, monkeypatch):
    write_csv(tmp_path, "customers.csv", ["客户编号", "客户名称", "类型", "手机"], [
        ["C1", "甲", "个人", "12345"], ["C1", "甲", "个人", "13800138001"]])
    report = run(tmp_path, FakeApi(), monkeypatch)
    assert figures(report)["customers"] == (2, 0, 0, 1, 0, 1)
    assert report["entities"]["customers"]["duplicates"][0]["reason"] == "legacy id C1 appears again (first at row 2)"


# --- orders carry their legacy status -----------------------------------------------------

ORDER_HEADER = ["订单编号", "客户编号", "总额", "状态", "已付金额", "付款方式"]


def legacy_orders(folder, orders):
    """One customer, one product (100.00) and ``orders``: [order row], each with one line of 2 of it."""
    write_csv(folder, "customers.csv", ["客户编号", "客户名称", "类型", "手机"], [["C1", "甲", "企业", "13800138001"]])
    write_csv(folder, "products.csv", ["产品编号", "产品名称", "单价"], [["SKU-1", "许可", "100"]])
    write_csv(folder, "orders.csv", ORDER_HEADER, orders)
    write_csv(folder, "order_lines.csv", ["订单编号", "产品编号", "数量", "单价", "折扣"],
              [[order[0], "SKU-1", "2", "", ""] for order in orders])


def orders_by_legacy_id(api, folder):
    state = json.loads((folder / "migration-state.json").read_text())["orders"]
    return {legacy: api.records["orders"][new] for legacy, new in state.items()}


def test_order_status_is_translated_and_checked():
    spec = m.load_mapping(EXAMPLE / "mapping.yaml")["entities"]["orders"]
    fields = m.apply_mapping("orders", spec, {"订单编号": "O1", "客户编号": "C1", "状态": "30", "付款方式": "转账"})
    assert (fields["status"], fields["payment_method"]) == ("paid", "bank_transfer")
    assert m.check_row("orders", fields, "CN") == []
    unknown = m.apply_mapping("orders", spec, {"订单编号": "O2", "客户编号": "C1", "状态": "55"})
    (field, reason), = m.check_row("orders", unknown, "CN")
    assert field == "status" and "'55' is not one of draft, confirmed, paid, fulfilled, cancelled" in reason
    paid_draft = {"_id": "O3", "customer": "C1", "status": "draft", "paid_amount": "10"}
    assert [f for f, _ in m.check_row("orders", paid_draft, "CN")] == ["paid_amount"]
    short_paid = {"_id": "O4", "customer": "C1", "status": "paid", "total": "200", "paid_amount": "150"}
    assert "paid in full" in dict(m.check_row("orders", short_paid, "CN"))["paid_amount"]


@pytest.mark.parametrize("status, paid_amount, steps", [
    ("draft", "", []),
    ("confirmed", "", ["confirm"]),
    ("confirmed", "50", ["confirm", "pay"]),
    ("paid", "", ["confirm", "pay"]),
    ("fulfilled", "", ["confirm", "pay", "fulfil"]),
    ("cancelled", "", ["cancel"]),
])
def test_the_steps_from_a_new_draft_to_each_status(status, paid_amount, steps):
    draft = {"status": "draft", "paid_amount": "0.00"}
    assert m.order_steps(draft, {"status": status, "paid_amount": paid_amount}) == steps


def test_the_steps_skip_what_is_done():
    paid = {"status": "paid", "paid_amount": "200.00"}
    assert m.order_steps(paid, {"status": "fulfilled"}) == ["fulfil"]
    assert m.order_steps(paid, {"status": "paid"}) == []
    assert m.order_steps({"status": "confirmed", "paid_amount": "50.00"}, {"status": "confirmed",
                                                                           "paid_amount": "50"}) == []
    # a paid order cannot be cancelled: nothing to try, the checksum shows the difference
    assert m.order_steps(paid, {"status": "cancelled"}) == []


def test_orders_reach_their_legacy_status_and_a_rerun_changes_nothing(tmp_path, monkeypatch):
    legacy_orders(tmp_path, [["O1", "C1", "", "10", "", ""], ["O2", "C1", "", "20", "50", ""],
                             ["O3", "C1", "200", "30", "", "转账"], ["O4", "C1", "", "40", "", ""],
                             ["O5", "C1", "", "90", "", ""], ["O6", "C1", "", "77", "", ""]])
    api = FakeApi()
    report = run(tmp_path, api, monkeypatch)
    assert figures(report)["orders"] == (6, 5, 0, 1, 0, 0)
    assert report["entities"]["orders"]["rejected"][0]["field"] == "status"
    assert report["entities"]["orders"]["checksum"]["equal"] is True
    orders = orders_by_legacy_id(api, tmp_path)
    assert {legacy: (o["status"], o["paid_amount"]) for legacy, o in orders.items()} == {
        "O1": ("draft", "0.00"), "O2": ("confirmed", "50.00"), "O3": ("paid", "200.00"),
        "O4": ("fulfilled", "200.00"), "O5": ("cancelled", "0.00")}
    payment, = [p for p in api.keys.values() if p.get("reference") == "migrated:O3"]
    assert (payment["amount"], payment["method"]) == ("200.00", "bank_transfer")

    steps = len(api.steps)
    again = run(tmp_path, api, monkeypatch)
    assert figures(again)["orders"] == (6, 0, 5, 1, 0, 0)
    assert len(api.steps) == steps


def test_a_resumed_run_takes_only_the_missing_steps(tmp_path, monkeypatch):
    legacy_orders(tmp_path, [["O1", "C1", "", "40", "", ""]])
    api = FakeApi()
    api.lose_answer_after = "payments"  # paid, but the run died before it heard so
    with pytest.raises(requests.ConnectionError):
        run(tmp_path, api, monkeypatch, workers=1)
    api.lose_answer_after = None
    report = run(tmp_path, api, monkeypatch)
    assert figures(report)["orders"] == (1, 0, 1, 0, 0, 0)
    order, = api.records["orders"].values()
    assert api.steps == [(order["id"], "confirm"), (order["id"], "payments"), (order["id"], "fulfil")]
    assert (order["status"], order["paid_amount"]) == ("fulfilled", "200.00")
    assert report["reconciled"], m.format_report(report)


def test_a_status_that_did_not_arrive_is_a_checksum_difference(tmp_path, monkeypatch):
    legacy_orders(tmp_path, [["O1", "C1", "", "30", "", ""]])
    api = FakeApi()
    run(tmp_path, api, monkeypatch)
    order, = api.records["orders"].values()
    order.update(status="confirmed", paid_amount="0.00", outstanding="200.00")  # as if the payment never arrived
    monkeypatch.setattr(m, "walk_order", lambda *args: [])
    report = run(tmp_path, api, monkeypatch)
    assert report["entities"]["orders"]["checksum"]["differing_ids"] == ["O1"]
    difference, = report["entities"]["orders"]["checksum"]["differences"]
    assert difference["source"][4:] == ["paid", ""] and difference["target"][4:] == ["confirmed", ""]
    assert not report["reconciled"]


def test_a_step_already_taken_elsewhere_is_read_back_not_repeated():
    api = FakeApi()
    order = {"id": "o1", "status": "draft", "total": "80.00", "paid_amount": "0.00", "outstanding": "80.00"}
    api.records["orders"]["o1"] = dict(order, status="confirmed")  # confirmed since ``order`` was read
    assert m.walk_order(api, order, {"status": "paid"}, "O1", "legacy") == []
    assert api.steps == [("o1", "payments")]
    assert api.records["orders"]["o1"]["status"] == "paid"
