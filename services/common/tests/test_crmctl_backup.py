"""crmctl backup / verify / restore / backups prune (crm_common.crmctl.backup).

SQLite databases as `make up` leaves them by default, one PostgreSQL database
for the snapshot under concurrent writes, and the retention policy with fixed
dates. The whole system's restore drill is tests/test_backup_restore.py.
"""
import hashlib
import json
import sqlite3
import threading
from contextlib import closing
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from crm_common import crypto
from crm_common.crmctl import backup as bk
from crm_common.crmctl import main
from crm_common.crmctl.common import SERVICES, CommandFailed
from crm_common.testing import TEST_DATA_KEYS


def fill(path, rows, version="rev1"):
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE IF NOT EXISTS alembic_version (version_num TEXT PRIMARY KEY)")
        connection.execute("DELETE FROM alembic_version")
        connection.execute("INSERT INTO alembic_version VALUES (?)", (version,))
        connection.execute("CREATE TABLE IF NOT EXISTS things (id TEXT PRIMARY KEY, amount NUMERIC, "
                           "blob BLOB, ratio REAL, note TEXT)")
        connection.executemany("INSERT INTO things VALUES (?, ?, ?, ?, ?)",
                               [(f"id-{i:04d}", f"{i}.50", bytes([i % 256]), i / 7, "名字" if i % 2 else None)
                                for i in rows])
        connection.execute("CREATE TABLE IF NOT EXISTS log (n INTEGER, text TEXT)")  # no primary key
        connection.executemany("INSERT INTO log VALUES (?, ?)", [(i, f"line {i}") for i in rows])
        connection.commit()


def content(path):
    with closing(sqlite3.connect(path)) as connection:
        return (connection.execute("SELECT * FROM things ORDER BY id").fetchall(),
                connection.execute("SELECT * FROM log ORDER BY n").fetchall(),
                connection.execute("SELECT * FROM alembic_version").fetchall())


@pytest.fixture
def environ(tmp_path):
    """The services' environment: every database a SQLite file under CRM_VAR_DIR, a key file."""
    var = tmp_path / "var"
    var.mkdir()
    keys = var / "data-keys.json"
    crypto.write_keys_file(str(keys), crypto.new_keys_document(), replace=False)
    for n, service in enumerate(SERVICES):
        fill(str(var / f"{service}.db"), range(n * 10, n * 10 + 25))
    return {"CRM_VAR_DIR": str(var), "CRM_DATA_KEYS_FILE": str(keys), "PATH": "/usr/bin:/bin"}


def db(environ, service):
    return f"{environ['CRM_VAR_DIR']}/{service}.db"


def test_a_backup_restores_every_database_exactly(environ, tmp_path):
    now = datetime(2026, 11, 29, 22, 0, 5, tzinfo=timezone.utc)
    before = {service: content(db(environ, service)) for service in SERVICES}

    path, manifest = bk.backup(tmp_path / "backups", environ, now=now)

    assert path.name == "crm-backup-20261129T220005Z"
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [f"{s}.sqlite3" for s in SERVICES] + ["manifest.json", "manifest.json.sha256"])
    written = json.loads((path / "manifest.json").read_text())
    assert written == manifest and manifest["created_at"] == "2026-11-29T22:00:05Z"
    sidecar = (path / "manifest.json.sha256").read_text()
    assert sidecar == hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest() + "  manifest.json\n"
    assert manifest["data_keys"] == {
        "included": False, "key_ids": sorted(json.load(open(environ["CRM_DATA_KEYS_FILE"]))["keys"])}
    customers = manifest["services"]["customers"]
    assert customers["engine"] == "sqlite" and customers["alembic_version"] == "rev1"
    assert customers["sha256"] == bk.sha256_file(path / "customers.sqlite3")
    assert {t: s["rows"] for t, s in customers["tables"].items()} == {"alembic_version": 1, "things": 25, "log": 25}
    assert bk.verify(path) == [] and bk.verify(path, deep=True, environ=environ) == []

    # The databases are lost; the restore needs no --force into missing (or empty) ones.
    for service in SERVICES:
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / "var" / f"{service}.db{suffix}").unlink(missing_ok=True)
    restored, found = bk.restore(path, environ=environ)
    assert found == [] and restored == manifest
    assert {service: content(db(environ, service)) for service in SERVICES} == before


def test_checksums_follow_the_rows_not_the_file(environ, tmp_path):
    stats, _ = bk.sqlite_describe(db(environ, "sales"))
    with closing(sqlite3.connect(db(environ, "sales"))) as connection:
        connection.execute("VACUUM")  # another file, the same rows
    assert bk.sqlite_describe(db(environ, "sales"))[0] == stats
    with closing(sqlite3.connect(db(environ, "sales"))) as connection:
        connection.execute("UPDATE things SET note = 'changed' WHERE id = 'id-0012'")
        connection.commit()
    changed, _ = bk.sqlite_describe(db(environ, "sales"))
    assert changed["things"]["rows"] == stats["things"]["rows"]
    assert changed["things"]["checksum"] != stats["things"]["checksum"]
    assert changed["log"] == stats["log"]


def test_verify_finds_every_kind_of_tampering(environ, tmp_path):
    path, manifest = bk.backup(tmp_path / "backups", environ)
    assert main(["verify", str(path)]) == 0

    # A changed byte in a database file.
    data = bytearray((path / "sales.sqlite3").read_bytes())
    data[-100] ^= 0xFF
    (path / "sales.sqlite3").write_bytes(bytes(data))
    assert bk.verify(path) == ["sales: sales.sqlite3 does not match its sha256 in the manifest"]
    # A missing file.
    (path / "gateway.sqlite3").unlink()
    assert "gateway: gateway.sqlite3 is missing" in bk.verify(path)
    assert main(["verify", str(path)]) == 1

    # An edited manifest.
    text = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(text.replace('"rows": 25', '"rows": 26', 1))
    [problem] = bk.verify(path)
    assert "manifest.json does not match manifest.json.sha256" in problem


def test_a_deep_verify_compares_the_restored_contents(environ, tmp_path):
    path, manifest = bk.backup(tmp_path / "backups", environ)
    # A manifest rewritten consistently (sidecar too) that no longer describes the file:
    # only restoring the file and counting finds it.
    manifest["services"]["reporting"]["tables"]["things"]["rows"] = 24
    manifest["services"]["notifications"]["tables"]["log"]["checksum"] = "0" * 64
    bk.write_manifest(path, manifest)
    assert bk.verify(path) == []
    assert bk.verify(path, deep=True, environ=environ) == [
        "notifications.log: checksum differs from the manifest",
        "reporting.things: 25 rows, manifest 24",
    ]


def test_restore_refuses_to_overwrite_data_without_force(environ, tmp_path, capsys):
    path, manifest = bk.backup(tmp_path / "backups", environ)
    fill(db(environ, "customers"), range(1000, 1003))  # written after the backup
    changed = content(db(environ, "customers"))

    with pytest.raises(CommandFailed) as refused:
        bk.restore(path, environ=environ)
    assert "refusing to overwrite databases that hold rows" in str(refused.value)
    assert "customers (56 rows in 2 tables)" in str(refused.value)
    assert content(db(environ, "customers")) == changed  # nothing touched, not even the other services

    manifest, found = bk.restore(path, force=True, environ=environ)
    assert found == []
    assert len(content(db(environ, "customers"))[0]) == 25


def test_a_database_that_is_only_migrated_counts_as_empty(environ, tmp_path):
    path, _ = bk.backup(tmp_path / "backups", environ, services=("customers",))
    target = tmp_path / "fresh.db"
    with closing(sqlite3.connect(target)) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num TEXT PRIMARY KEY)")
        connection.execute("INSERT INTO alembic_version VALUES ('rev1')")
        connection.commit()
    environ = {**environ, "CRM_CUSTOMERS_DB_URL": f"sqlite:///{target}"}
    _, found = bk.restore(path, environ=environ)
    assert found == []


def test_the_restore_command_reports_and_reminds_of_the_keys(environ, tmp_path, capsys, monkeypatch):
    path, _ = bk.backup(tmp_path / "backups", environ)
    monkeypatch.delenv("CRM_DATA_KEYS")  # the key file of ``environ``, not the test keyring
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["restore", str(path)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["restore", str(path), "--force", "--service", "sales"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("sales          sqlite")
    assert "NOT in the backup" in out and "every row count and checksum equals the manifest" in out
    assert "warning" not in out

    # Keys that lack one the backup was made under: said so.
    monkeypatch.setenv("CRM_DATA_KEYS", TEST_DATA_KEYS)
    assert main(["restore", str(path), "--force", "--service", "sales"]) == 0
    assert "which the keys configured here lack" in capsys.readouterr().out


def test_the_backup_command_prints_the_manifest_and_prunes(environ, tmp_path, capsys, monkeypatch):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    old = tmp_path / "var" / "backups" / "crm-backup-20200101T000000Z"
    old.mkdir(parents=True)
    (old / "manifest.json").write_text("{}")
    assert main(["backup", "--keep-daily", "1", "--keep-weekly", "0"]) == 0
    out = capsys.readouterr().out
    assert "customers      sqlite     customers.sqlite3" in out
    assert "deleted crm-backup-20200101T000000Z" in out and not old.exists()
    [made] = (tmp_path / "var" / "backups").iterdir()
    assert f"backup: {made}" in out


def at(text):
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)


def test_retention_keeps_the_newest_of_each_recent_day_and_week():
    times = [at(t) for t in (
        "2026-11-02 02:00",                      # Mon, ISO week 45
        "2026-11-08 02:00",                      # Sun, week 45
        "2026-11-10 02:00",                      # week 46
        "2026-11-16 02:00", "2026-11-16 14:00",  # week 47
        "2026-11-23 02:00",                      # Mon, week 48
        "2026-11-27 02:00", "2026-11-27 14:00",  # Fri, week 48
        "2026-11-28 02:00",                      # Sat, week 48
        "2026-11-29 02:00", "2026-11-29 14:00",  # Sun, week 48
    )]
    kept = bk.retained(times, keep_daily=3, keep_weekly=3)
    assert sorted(t.strftime("%m-%d %H") for t in kept) == [
        "11-10 02",  # week 46
        "11-16 14",  # week 47's newest
        "11-27 14", "11-28 02", "11-29 14",  # the last three days' newest (11-29 14 is also week 48's)
    ]
    assert bk.retained(times, keep_daily=0, keep_weekly=1) == {at("2026-11-29 14:00")}
    # Days without a backup do not count: a stopped schedule keeps the last ones.
    assert bk.retained(times[:3], keep_daily=2, keep_weekly=0) == {at("2026-11-08 02:00"), at("2026-11-10 02:00")}
    assert bk.retained([], 7, 4) == set()


def test_prune_deletes_what_the_policy_drops_and_nothing_else(tmp_path, capsys):
    start = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)
    for day in range(20):
        folder = tmp_path / ("crm-backup-" + (start + timedelta(days=day)).strftime("%Y%m%dT%H%M%SZ"))
        folder.mkdir()
        (folder / "manifest.json").write_text("{}")
    (tmp_path / "crm-backup-20261101T030000Z.partial").mkdir()  # being made
    (tmp_path / "crm-backup-20261101T040000Z").mkdir()           # no manifest: not a backup
    (tmp_path / "notes.txt").write_text("keep me")

    assert main(["backups", "prune", "--dir", str(tmp_path), "--keep-daily", "3", "--keep-weekly", "2",
                 "--dry-run"]) == 0
    assert "would delete crm-backup-20261101T020000Z" in capsys.readouterr().out
    deleted = bk.prune(tmp_path, keep_daily=3, keep_weekly=2)
    # Nov 18-20 (days), Nov 15 (Sunday, week 46's newest; week 47's is Nov 20).
    assert len(deleted) == 16 and deleted[0] == "crm-backup-20261101T020000Z"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "crm-backup-20261101T030000Z.partial", "crm-backup-20261101T040000Z",
        "crm-backup-20261115T020000Z", "crm-backup-20261118T020000Z", "crm-backup-20261119T020000Z",
        "crm-backup-20261120T020000Z", "notes.txt"]
    assert bk.prune(tmp_path, keep_daily=3, keep_weekly=2) == []
    with pytest.raises(CommandFailed):
        bk.prune(tmp_path, keep_daily=0, keep_weekly=0)


def test_postgresql_backup_is_one_snapshot_while_writes_go_on(pg_url, tmp_path):
    """Rows committed while pg_dump runs are in neither the dump nor the manifest: both describe the
    exported snapshot, so a deep verify (restore into a scratch database, count, checksum) agrees."""
    with closing(psycopg2.connect(**bk.pg_params(pg_url))) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY);"
                       "INSERT INTO alembic_version VALUES ('abc123');"
                       "CREATE TABLE things (id TEXT PRIMARY KEY, at TIMESTAMPTZ DEFAULT now(), "
                       "amount NUMERIC(18, 2), ratio FLOAT8, data JSONB, raw BYTEA);"
                       "INSERT INTO things SELECT 'k' || g, now(), g / 3.0, g / 7.0, "
                       "jsonb_build_object('g', g), '\\x00ff' FROM generate_series(1, 3000) g;"
                       "CREATE TABLE log (n INT)")
        connection.commit()
    stop = threading.Event()
    written = []

    def write():
        with closing(psycopg2.connect(**bk.pg_params(pg_url))) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                n = 0
                while not stop.is_set():
                    n += 1
                    cursor.execute("INSERT INTO things (id, amount, ratio) VALUES (%s, 1, 0.5);"
                                   "INSERT INTO log VALUES (%s)", (f"w{n}", n))
                    written.append(n)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        environ = {"CRM_CUSTOMERS_DB_URL": pg_url, "PATH": "/usr/bin:/bin"}
        path, manifest = bk.backup(tmp_path / "backups", environ, services=("customers",))
    finally:
        stop.set()
        writer.join()
    entry = manifest["services"]["customers"]
    assert entry["engine"] == "postgresql" and entry["file"] == "customers.dump"
    assert entry["alembic_version"] == "abc123"
    assert entry["database"] == make_url(pg_url).database
    assert entry["tables"]["things"]["rows"] - 3000 == entry["tables"]["log"]["rows"]  # one snapshot
    assert bk.verify(path, deep=True, environ=environ) == []

    # Restore over the database (which has the writer's later rows): refused, then forced.
    assert written
    with pytest.raises(CommandFailed, match="refusing to overwrite"):
        bk.restore(path, environ=environ)
    _, found = bk.restore(path, force=True, environ=environ)
    assert found == []
    with closing(psycopg2.connect(**bk.pg_params(pg_url))) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM log")
        assert cursor.fetchone()[0] == entry["tables"]["log"]["rows"]
