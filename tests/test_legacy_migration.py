"""`crmctl migrate` end to end: a realistic legacy export into a running system of its own, through the API.

The data set is generated here: 200 customers in a GBK-encoded CSV with
Chinese headers and old status codes (docs/migration-example/mapping.yaml),
contacts, follow-ups, products, orders with their lines, and contracts; with
deliberate defects: 3 bad phones, 2 duplicate customers (same phone; same
legacy id), 2 orphan orders (unknown customers) and 1 order line naming an
unknown product. The report is checked figure by figure, the records through
the API; the run is interrupted after a contact is created but before its
state is saved, resumed (the lost answer comes back by Idempotency-Key), and
run again from the command line with an API key: nothing new.
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
GOOD_CUSTOMERS = 195
STAGES = {"1": "lead", "2": "prospect", "3": "customer", "4": "churned"}


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
    contacts = [[f"P{i:04d}", f"C{i:04d}", f"联系人{i}", "采购", f"137{i:08d}", ""] for i in range(2, 122, 2)]
    write(folder, "contacts.csv", ["联系人编号", "客户编号", "姓名", "职务", "电话", "邮箱"], contacts)
    followups = [[f"F{i:04d}", f"C{i:04d}", "电话拜访会议邮件"[(i % 4) * 2:(i % 4) * 2 + 2], f"第{i}次沟通",
                  "有意向", f"2024-03-{i % 28 + 1:02d} 10:00"] for i in range(1, 101)]
    write(folder, "followups.csv", ["记录编号", "客户编号", "方式", "内容", "结果", "时间"], followups)
    products = [[f"SKU-{p:03d}", f"产品{p}", f"{p * 100}.00", "CNY", "件", "13" if p % 2 else "0"]
                for p in range(1, 11)]
    write(folder, "products.csv", ["产品编号", "产品名称", "单价", "币种", "单位", "税率"], products)
    orders, lines, totals = [], [], {}
    for o in range(1, 61):
        total = Decimal(0)
        for n in range(1, o % 3 + 2):
            p = (o + n) % 10 + 1
            lines.append([f"O{o:04d}", f"SKU-{p:03d}", str(n), "", ""])
            total += Decimal(p * 100 * n) * (Decimal("1.13") if p % 2 else 1)
        orders.append([f"O{o:04d}", f"C{o * 3:04d}", "CNY", f"订单{o}", f"{total:.2f}"])
        totals[f"O{o:04d}"] = f"{total:.2f}"
    orders += [["O9001", "C8888", "CNY", "孤儿订单", "100.00"], ["O9002", "C8889", "CNY", "孤儿订单", "200.00"],
               ["O9003", "C0010", "CNY", "未知产品", "300.00"]]
    lines += [["O9001", "SKU-001", "1", "", ""], ["O9002", "SKU-002", "1", "", ""],
              ["O9003", "SKU-001", "1", "", ""], ["O9003", "SKU-404", "1", "", ""]]
    write(folder, "orders.csv", ["订单编号", "客户编号", "币种", "备注", "总额"], orders)
    write(folder, "order_lines.csv", ["订单编号", "产品编号", "数量", "单价", "折扣"], lines)
    contracts = [[f"K{k:04d}", f"C{k * 3:04d}", f"O{k:04d}" if k % 2 else "", f"合同{k}", f"{k * 1000}.00", "CNY",
                  "2024-01-01", "2024-12-31"] for k in range(1, 21)]
    write(folder, "contracts.csv", ["合同编号", "客户编号", "订单编号", "合同名称", "金额", "币种", "开始日期", "结束日期"],
          contracts)
    return {"lines": len(lines), "good_lines": len(lines) - 5, "totals": totals}


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
        "customers": (200, GOOD_CUSTOMERS, 0, 3, 0, 2), "products": (10, 10, 0, 0, 0, 0),
        "contacts": (60, 60, 0, 0, 0, 0), "followups": (100, 100, 0, 0, 0, 0),
        # O9001/O9002: unknown customers; O9003: a line names SKU-404
        "orders": (63, 60, 0, 1, 2, 0),
        # the lines of O9001 and O9002 and O9003's good line are rejected with their order; SKU-404 is an orphan
        "order_lines": (lines, lines - 4, 0, 3, 1, 0),
        "contracts": (20, 20, 0, 0, 0, 0),
    }

    # 1. Dry run: the same figures, nothing written, no backup.
    dry = m.migrate(folder, mapping, dry_run=True, **base)
    assert figures(dry) == want
    assert dry["entities"]["customers"]["encoding"] == "gbk"
    assert admin.get("/customers").json()["items"] == []
    assert not (tmp_path / "backups").exists()

    # 2. Interrupted once 195 customers + 10 products + 25 contacts are created: the answers of the 25th
    #    contact and of those in flight beside it (4 workers) are "lost", not in the state file.
    with pytest.raises(m.MigrationInterrupted):
        m.migrate(folder, mapping, stop_after=230, **base)
    assert len(list((tmp_path / "backups").glob("crm-backup-*"))) == 1
    saved = len(json.loads((folder / "migration-state.json").read_text())["contacts"])
    assert 20 <= saved <= 24

    # 3. Resumed: the rest, the lost contact answered from the idempotency store; the report figure by figure.
    report = m.migrate(folder, mapping, backup=False, **base)
    done = figures(report)
    assert done["customers"] == (200, 0, GOOD_CUSTOMERS, 3, 0, 2)
    assert done["products"] == (10, 0, 10, 0, 0, 0)
    # the saved ones and the lost answers (replayed by Idempotency-Key) are already present
    assert done["contacts"][0] == 60 and done["contacts"][1] + done["contacts"][2] == 60
    assert done["contacts"][2] >= 25 > saved and done["contacts"][3:] == (0, 0, 0)
    for entity in ("followups", "orders", "order_lines", "contracts"):
        assert done[entity] == want[entity], entity
    assert not report["reconciled"]
    for entity, e in report["entities"].items():
        assert e["unaccounted"] == 0, entity
        if entity != "order_lines":
            assert e["checksum"]["equal"] is True, (entity, e["checksum"])
            assert e["checksum"]["source_records"] == want[entity][1]
    customers = report["entities"]["customers"]
    assert sorted(r["row"] for r in customers["rejected"]) == [197, 198, 199]
    assert all(r["field"] == "phones" and "not a valid phone number" in r["reason"] for r in customers["rejected"])
    assert sorted((d["legacy_id"], d["field"]) for d in customers["duplicates"]) == [("C0007", "id"),
                                                                                    ("C9101", "phones")]
    assert sorted(o["legacy_id"] for o in report["entities"]["orders"]["orphans"]) == ["O9001", "O9002"]
    assert report["entities"]["orders"]["rejected"][0]["legacy_id"] == "O9003"
    assert "SKU-404" in report["entities"]["order_lines"]["orphans"][0]["reason"]
    assert json.loads((folder / "migration-report.json").read_text())["entities"]["orders"]["migrated"] == 60

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
    assert len(orders) == 60
    by_notes = {o["notes"]: o for o in orders}
    assert by_notes["订单7"]["total"] == expected["totals"]["O0007"]
    assert len(admin.get("/contracts", params={"limit": 200}).json()["items"]) == 20
    state = json.loads((folder / "migration-state.json").read_text())
    assert len(set(state["contacts"].values())) == 60
    assert sum(len(admin.get(f"/customers/{cid}/contacts").json()["items"])
               for cid in {company["id"]} | {c["id"] for c in admin.get(
                   "/customers", params={"kind": "company", "limit": 200}).json()["items"]}) == 60

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
    assert figures(again)["contacts"] == (60, 0, 60, 0, 0, 0)
    assert figures(again)["orders"] == (63, 0, 60, 1, 2, 0)
    assert len(admin.get("/orders", params={"limit": 200}).json()["items"]) == 60
    assert len(admin.get("/customers", params={"limit": 200}).json()["items"]) == GOOD_CUSTOMERS
