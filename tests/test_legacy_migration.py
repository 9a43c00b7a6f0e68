"""`crmctl migrate` end to end: a realistic legacy export into a running system of its own, through the API.

The data set is generated here: 100 customers in a GBK-encoded CSV with
Chinese headers and old status codes (docs/migration-example/mapping.yaml),
contacts, follow-ups, products, orders with their lines and legacy statuses
(draft, confirmed with or without a deposit, paid, fulfilled, cancelled), and
contracts; with deliberate defects: 3 bad phones, 2 duplicate customers (same
phone; same legacy id), 2 orphan orders (unknown customers), 1 order line
naming an unknown product and 1 order with an unknown status code. The report
is checked figure by figure, the records (and each order's status and paid
amount) through the API; the run is interrupted after a contact is created
but before its state is saved, resumed (the lost answer comes back by
Idempotency-Key), and run again from the command line with an API key:
nothing new, no order moved or paid again.
"""
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from crm_common.crmctl import migrate as m
from crm_common.testing_system import ADMIN_EMAIL, ADMIN_PASSWORD, login, running_system

ROOT = Path(__file__).resolve().parents[1]
MAPPING = ROOT / "docs" / "migration-example" / "mapping.yaml"
CRMCTL = str(Path(sys.executable).with_name("crmctl"))
GOOD_CUSTOMERS = 95
PRODUCTS = 10
STAGES = {"1": "lead", "2": "prospect", "3": "customer", "4": "churned"}
# Legacy order status codes, as mapping.yaml translates them; order n has ORDER_CODES[n % 5].
ORDER_CODES = ("10", "20", "30", "40", "90")
ORDER_STATUSES = {"10": "draft", "20": "confirmed", "30": "paid", "40": "fulfilled", "90": "cancelled"}


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    with running_system("migrate", workdir=tmp_path_factory.mktemp("migrate")) as running:
        yield running


def write(folder, name, header, rows, encoding="utf-8-sig"):
    text = "\r\n".join(",".join(str(cell) for cell in row) for row in [header] + rows) + "\r\n"
    (folder / name).write_bytes(text.encode(encoding))


def legacy_export(folder):
    """The legacy CRM's export; returns what the test expects of it."""
    customers = []
    for i in range(1, GOOD_CUSTOMERS + 1):
        company = i % 2 == 0
        customers.append([f"C{i:04d}", f"{'公司' if company else '客户'}{i:04d}号", "企业" if company else "个人",
                          f"华东公司{i:04d}" if company else "", f"139-{i:04d}-{i:04d}", f"c{i}@legacy.example",
                          "上海", "零售", "华东", "甲乙丙丁"[i % 4], str(i % 4 + 1), "展会", ""])
    bad_phones = ["12345", "138-0000", "电话未知"]
    for n, phone in enumerate(bad_phones, start=1):
        customers.append([f"C9{n:03d}", f"坏号码{n}", "个人", "", phone, "", "", "", "", "", "1", "", ""])
    customers.append(["C9101", "重复电话", "个人", "", "13900050005", "", "", "", "", "", "1", "", ""])  # = C0005
    customers.append(["C0007", "重复编号", "企业", "重复编号公司", "13811112222", "", "", "", "", "", "1", "", ""])
    write(folder, "customers.csv", ["客户编号", "客户名称", "类型", "公司", "手机", "邮箱", "城市", "行业", "区域",
                                    "等级", "状态", "来源", "备注"], customers, encoding="gbk")
    contacts = [[f"P{i:04d}", f"C{i:04d}", f"联系人{i}", "采购", f"137{i:08d}", ""] for i in range(2, 62, 2)]
    write(folder, "contacts.csv", ["联系人编号", "客户编号", "姓名", "职务", "电话", "邮箱"], contacts)
    followups = [[f"F{i:04d}", f"C{i:04d}", "电话拜访会议邮件"[(i % 4) * 2:(i % 4) * 2 + 2], f"第{i}次沟通",
                  "有意向", f"2024-03-{i % 28 + 1:02d} 10:00"] for i in range(1, 51)]
    write(folder, "followups.csv", ["记录编号", "客户编号", "方式", "内容", "结果", "时间"], followups)
    products = [[f"SKU-{p:03d}", f"产品{p}", f"{p * 100}.00", "CNY", "件", "13" if p % 2 else "0"]
                for p in range(1, PRODUCTS + 1)]
    write(folder, "products.csv", ["产品编号", "产品名称", "单价", "币种", "单位", "税率"], products)
    orders, lines, totals, paid = [], [], {}, {}
    for o in range(1, 31):
        total = Decimal(0)
        for n in range(1, o % 3 + 2):
            p = (o + n) % 10 + 1
            lines.append([f"O{o:04d}", f"SKU-{p:03d}", str(n), "", ""])
            total += Decimal(p * 100 * n) * (Decimal("1.13") if p % 2 else 1)
        code = ORDER_CODES[o % 5]
        # Paid and fulfilled orders are paid in full (the default); every other confirmed one paid a deposit.
        deposit = "100.00" if code == "20" and o % 2 else ""
        paid_at, method = ("2024-05-06 09:30", "转账") if code in ("30", "40") or deposit else ("", "")
        orders.append([f"O{o:04d}", f"C{o * 3:04d}", "CNY", f"订单{o}", f"{total:.2f}", code, deposit, paid_at,
                       method])
        totals[f"O{o:04d}"] = f"{total:.2f}"
        paid[f"O{o:04d}"] = (ORDER_STATUSES[code], f"{total:.2f}" if code in ("30", "40") else deposit or "0.00")
    orders += [["O9001", "C8888", "CNY", "孤儿订单", "100.00", "30", "", "", ""],
               ["O9002", "C8889", "CNY", "孤儿订单", "200.00", "10", "", "", ""],
               ["O9003", "C0010", "CNY", "未知产品", "300.00", "10", "", "", ""],
               ["O9004", "C0010", "CNY", "未知状态", "100.00", "55", "", "", ""]]
    lines += [["O9001", "SKU-001", "1", "", ""], ["O9002", "SKU-002", "1", "", ""],
              ["O9003", "SKU-001", "1", "", ""], ["O9003", "SKU-404", "1", "", ""], ["O9004", "SKU-001", "1", "", ""]]
    write(folder, "orders.csv", ["订单编号", "客户编号", "币种", "备注", "总额", "状态", "已付金额", "付款日期", "付款方式"],
          orders)
    write(folder, "order_lines.csv", ["订单编号", "产品编号", "数量", "单价", "折扣"], lines)
    contracts = [[f"K{k:04d}", f"C{k * 3:04d}", f"O{k:04d}" if k % 2 else "", f"合同{k}", f"{k * 1000}.00", "CNY",
                  "2024-01-01", "2024-12-31"] for k in range(1, 11)]
    write(folder, "contracts.csv", ["合同编号", "客户编号", "订单编号", "合同名称", "金额", "币种", "开始日期", "结束日期"],
          contracts)
    return {"lines": len(lines), "totals": totals, "status_and_paid": paid}


def figures(report):
    return {entity: (e["source_rows"], e["migrated"], e["already_present"], len(e["rejected"]), len(e["orphans"]),
                     len(e["duplicates"])) for entity, e in report["entities"].items()}


def test_legacy_migration(system, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    expected = legacy_export(folder)
    admin = login(system, ADMIN_EMAIL, ADMIN_PASSWORD)
    mapping = m.load_mapping(MAPPING)
    base = dict(base_url=system.gateway_url, email=ADMIN_EMAIL, password=ADMIN_PASSWORD, environ=system.env,
                backup_dir=tmp_path / "backups")
    lines = expected["lines"]
    want = {
        "customers": (GOOD_CUSTOMERS + 5, GOOD_CUSTOMERS, 0, 3, 0, 2), "products": (PRODUCTS, PRODUCTS, 0, 0, 0, 0),
        "contacts": (30, 30, 0, 0, 0, 0), "followups": (50, 50, 0, 0, 0, 0),
        # O9001/O9002: unknown customers; O9003: a line names SKU-404; O9004: status code 55
        "orders": (34, 30, 0, 2, 2, 0),
        # the lines of O9001, O9002, O9004 and O9003's good line are rejected with their order; SKU-404 is an orphan
        "order_lines": (lines, lines - 5, 0, 4, 1, 0),
        "contracts": (10, 10, 0, 0, 0, 0),
    }

    # 1. Dry run: the same figures, nothing written, no backup.
    dry = m.migrate(folder, mapping, dry_run=True, **base)
    assert figures(dry) == want
    assert [(r["legacy_id"], r["field"]) for r in dry["entities"]["orders"]["rejected"]
            if "55" in r["reason"]] == [("O9004", "status")]
    assert dry["entities"]["customers"]["encoding"] == "gbk"
    assert admin.get("/customers").json()["items"] == []
    assert not (tmp_path / "backups").exists()

    # 2. Interrupted once the customers, the products and 13 contacts are created: the answers of the 13th
    #    contact and of those in flight beside it (4 workers) are "lost", not in the state file.
    with pytest.raises(m.MigrationInterrupted):
        m.migrate(folder, mapping, stop_after=GOOD_CUSTOMERS + PRODUCTS + 13, **base)
    assert len(list((tmp_path / "backups").glob("crm-backup-*"))) == 1
    saved = len(json.loads((folder / "migration-state.json").read_text())["contacts"])
    assert 8 <= saved <= 12

    # 3. Resumed: the rest, the lost contact answered from the idempotency store; the report figure by figure.
    report = m.migrate(folder, mapping, backup=False, **base)
    done = figures(report)
    assert done["customers"] == (GOOD_CUSTOMERS + 5, 0, GOOD_CUSTOMERS, 3, 0, 2)
    assert done["products"] == (PRODUCTS, 0, PRODUCTS, 0, 0, 0)
    # the saved ones and the lost answers (replayed by Idempotency-Key) are already present
    assert done["contacts"][0] == 30 and done["contacts"][1] + done["contacts"][2] == 30
    assert done["contacts"][2] >= 13 > saved and done["contacts"][3:] == (0, 0, 0)
    for entity in ("followups", "orders", "order_lines", "contracts"):
        assert done[entity] == want[entity], entity
    assert not report["reconciled"]
    for entity, e in report["entities"].items():
        assert e["unaccounted"] == 0, entity
        if entity != "order_lines":
            assert e["checksum"]["equal"] is True, (entity, e["checksum"])
            assert e["checksum"]["source_records"] == want[entity][1]
    customers = report["entities"]["customers"]
    assert sorted(r["row"] for r in customers["rejected"]) == [97, 98, 99]
    assert all(r["field"] == "phones" and "not a valid phone number" in r["reason"] for r in customers["rejected"])
    assert sorted((d["legacy_id"], d["field"]) for d in customers["duplicates"]) == [("C0007", "id"),
                                                                                    ("C9101", "phones")]
    assert sorted(o["legacy_id"] for o in report["entities"]["orders"]["orphans"]) == ["O9001", "O9002"]
    assert sorted((r["legacy_id"], r["field"]) for r in report["entities"]["orders"]["rejected"]) == [
        ("O9003", "lines"), ("O9004", "status")]
    assert "SKU-404" in report["entities"]["order_lines"]["orphans"][0]["reason"]
    assert json.loads((folder / "migration-report.json").read_text())["entities"]["orders"]["migrated"] == 30

    # 4. The records, through the API.
    listed = admin.get("/customers", params={"phone": "13900050005"}).json()["items"]
    assert [(c["external_id"], c["lifecycle_stage"]) for c in listed] == [("C0005", STAGES[str(5 % 4 + 1)])]
    company, = admin.get("/customers", params={"phone": "+86 139 0004 0004"}).json()["items"]
    assert (company["name"], company["kind"], company["tier"], company["external_id"]) == \
        ("公司0004号", "company", "A", "C0004")
    assert company["contact"]["phones"] == ["+8613900040004"]
    contacts = admin.get(f"/customers/{company['id']}/contacts").json()["items"]
    assert [c["name"] for c in contacts] == ["联系人4"]
    orders = admin.get("/orders", params={"limit": 200}).json()["items"]
    assert len(orders) == 30
    by_notes = {o["notes"]: o for o in orders}
    assert by_notes["订单7"]["total"] == expected["totals"]["O0007"]
    # every order at its legacy status, with what the legacy CRM says was paid
    assert {f"O{int(o['notes'][2:]):04d}": (o["status"], o["paid_amount"]) for o in orders} == \
        expected["status_and_paid"]
    assert sorted({o["status"] for o in orders}) == ["cancelled", "confirmed", "draft", "fulfilled", "paid"]
    deposit, = admin.get(f"/orders/{by_notes['订单1']['id']}/payments").json()["items"]
    assert (deposit["amount"], deposit["method"], deposit["reference"]) == ("100.00", "bank_transfer",
                                                                             "migrated:O0001")
    assert deposit["paid_at"].startswith("2024-05-06T09:30")
    assert len(admin.get("/contracts", params={"limit": 200}).json()["items"]) == 10
    state = json.loads((folder / "migration-state.json").read_text())
    assert len(set(state["contacts"].values())) == 30
    assert sum(len(admin.get(f"/customers/{cid}/contacts").json()["items"])
               for cid in {company["id"]} | {c["id"] for c in admin.get(
                   "/customers", params={"kind": "company", "limit": 200}).json()["items"]}) == 30

    # 5. Again, from the command line with an API key: nothing new, exit 1 (the defects are still there).
    key = admin.post("/api-keys", json={"name": "migration", "scopes": [
        f"{r}:{a}" for r in ("customers", "contacts", "followups", "products", "orders", "contracts")
        for a in ("read", "write")]})
    assert key.status_code == 201, key.text
    run = subprocess.run([CRMCTL, "migrate", str(folder), "--mapping", str(MAPPING), "--base-url",
                          system.gateway_url, "--api-key", key.json()["key"], "--no-backup",
                          "--report", str(tmp_path / "again.json")],
                         env=system.env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "NOT RECONCILED" in run.stdout
    again = json.loads((tmp_path / "again.json").read_text())
    assert all(e["migrated"] == 0 for e in again["entities"].values())
    assert figures(again)["contacts"] == (30, 0, 30, 0, 0, 0)
    assert figures(again)["orders"] == (34, 0, 30, 2, 2, 0)
    assert again["entities"]["orders"]["checksum"]["equal"] is True
    # no order moved, none paid again: each order as the first run left it
    assert sorted((o["id"], o["status"], o["paid_amount"], o["version"]) for o in admin.get(
        "/orders", params={"limit": 200}).json()["items"]) == sorted(
        (o["id"], o["status"], o["paid_amount"], o["version"]) for o in orders)
    assert len(admin.get("/customers", params={"limit": 200}).json()["items"]) == GOOD_CUSTOMERS
