"""``crmctl backup | verify | restore | backups prune``: every service's database in one folder.

    crmctl backup [--dir var/backups] [--keep-daily N --keep-weekly M]
    crmctl verify <backup> [--deep]
    crmctl restore <backup> [--force] [--service S ...]
    crmctl backups prune --keep-daily N --keep-weekly M [--dir var/backups]

A backup is a folder ``<dir>/crm-backup-<UTC timestamp>`` holding one file
per service and ``manifest.json`` (its own sha256 in ``manifest.json.sha256``,
``sha256sum -c`` format). The database URLs are the services' own
(``CRM_<SERVICE>_DB_URL``, else the SQLite file under ``$CRM_VAR_DIR``), so
run crmctl with the services' environment. It runs while the system serves
traffic:

* PostgreSQL: one REPEATABLE READ, READ ONLY transaction per database exports
  its snapshot (``pg_export_snapshot()``); ``pg_dump --format=custom
  --snapshot=<it>`` dumps exactly that snapshot while the same transaction
  counts and checksums every table, so the manifest describes the dump, not
  the database a moment later.
* SQLite: the online backup API copies the file consistently (readers and
  writers carry on; WAL included); counts and checksums are read from the copy.

A table's checksum is ``sha256`` over each row's text followed by a newline,
rows in primary-key order (text key columns compared bytewise, ``COLLATE
"C"``; a table without a primary key in the order of its whole row text). A
row's text is PostgreSQL's text form of the whole row (``row::text``, with
UTC, ISO dates, hex bytea and shortest exact floats fixed for the session);
for SQLite the JSON array of its values (blobs as hex). Checksums are compared
only with ones made the same way from the same engine.

The data keys are not in the backup, on purpose: personal data is encrypted
at rest so that a copy of the database alone does not reveal it, and backups
travel further (object storage, other machines) than the key file should.
The manifest records the key ids the system had, and restore warns when the
keys configured now lack one of them.
"""
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.engine import make_url

from crm_common.crmctl.common import SERVICES, CommandFailed

FORMAT = 1
MANIFEST = "manifest.json"
MANIFEST_SUM = MANIFEST + ".sha256"
NAME_PREFIX = "crm-backup-"
NAME_FORMAT = "%Y%m%dT%H%M%SZ"
NAME_PATTERN = re.compile(r"^crm-backup-(\d{8}T\d{6}Z)$")
CHECKSUM_METHODS = {
    "postgresql": "sha256 of row::text + newline per row, primary-key order",
    "sqlite": "sha256 of JSON array of values + newline per row, primary-key order",
}
KEYS_REMINDER = (
    "Personal data in the databases is encrypted: reading it after a restore needs the data keys "
    "(the key file CRM_DATA_KEYS_FILE, or CRM_DATA_KEYS), which are NOT in the backup. "
    "Keep them apart, in your secret store (docs/security.md).")
ROOT = Path(__file__).resolve().parents[4]


# --- command line -------------------------------------------------------------------

def add_parsers(subparsers):
    backup = subparsers.add_parser(
        "backup", help="back up every service's database into one timestamped folder (while the system runs)")
    backup.add_argument("--dir", default=None, help="where backups go (default: $CRM_VAR_DIR/backups)")
    backup.add_argument("--keep-daily", type=int, default=None, metavar="N",
                        help="afterwards prune: keep the newest backup of each of the last N days")
    backup.add_argument("--keep-weekly", type=int, default=None, metavar="M",
                        help="afterwards prune: keep the newest backup of each of the last M ISO weeks")
    backup.set_defaults(handler=cmd_backup)

    verify = subparsers.add_parser("verify", help="check a backup's files against its manifest")
    verify.add_argument("backup", help="the backup folder")
    verify.add_argument("--deep", action="store_true",
                        help="also restore into scratch databases and compare row counts and checksums")
    verify.set_defaults(handler=cmd_verify)

    restore = subparsers.add_parser(
        "restore", help="restore every service's database from a backup (stop the services first)")
    restore.add_argument("backup", help="the backup folder")
    restore.add_argument("--force", action="store_true", help="replace databases that hold rows")
    restore.add_argument("--service", action="append", dest="services", choices=SERVICES, default=None,
                         help="only this service (repeatable; default: every service in the backup)")
    restore.set_defaults(handler=cmd_restore)

    backups = subparsers.add_parser("backups", help="manage the backups folder")
    backups_sub = backups.add_subparsers(dest="backups_command", metavar="BACKUPS_COMMAND", required=True)
    prune = backups_sub.add_parser("prune", help="delete backups the retention policy does not keep")
    prune.add_argument("--dir", default=None, help="the backups folder (default: $CRM_VAR_DIR/backups)")
    prune.add_argument("--keep-daily", type=int, required=True, metavar="N")
    prune.add_argument("--keep-weekly", type=int, required=True, metavar="M")
    prune.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    prune.set_defaults(handler=cmd_prune)


def cmd_backup(args):
    if (args.keep_daily is None) != (args.keep_weekly is None):
        raise CommandFailed("give both --keep-daily and --keep-weekly, or neither")
    folder = default_dir(args.dir)
    path, manifest = backup(folder)
    print(format_manifest(manifest))
    print(f"backup: {path}")
    print(KEYS_REMINDER)
    if args.keep_daily is not None:
        for deleted in prune(folder, args.keep_daily, args.keep_weekly):
            print(f"deleted {deleted}")
    return 0


def cmd_verify(args):
    found = verify(args.backup, deep=args.deep)
    if found:
        for problem in found:
            print(f"MISMATCH {problem}")
        raise CommandFailed(f"{args.backup}: {len(found)} problem(s)")
    print(f"{args.backup}: OK ({'files, manifest and restored contents' if args.deep else 'files and manifest'})")
    return 0


def cmd_restore(args):
    manifest, found = restore(args.backup, force=args.force, services=args.services)
    print(format_manifest(manifest, only=args.services))
    for line in key_warnings(manifest):
        print(f"warning: {line}")
    print(KEYS_REMINDER)
    if found:
        for problem in found:
            print(f"MISMATCH {problem}")
        raise CommandFailed(f"restored, but {len(found)} difference(s) from the manifest")
    print("restored: every row count and checksum equals the manifest")
    return 0


def cmd_prune(args):
    deleted = prune(default_dir(args.dir), args.keep_daily, args.keep_weekly, dry_run=args.dry_run)
    for name in deleted:
        print(f"{'would delete' if args.dry_run else 'deleted'} {name}")
    if not deleted:
        print("nothing to delete")
    return 0


def format_manifest(manifest, only=None):
    lines = []
    for service, entry in sorted(manifest["services"].items(),
                                 key=lambda item: SERVICES.index(item[0]) if item[0] in SERVICES else len(SERVICES)):
        if only and service not in only:
            continue
        rows = sum(table["rows"] for table in entry["tables"].values())
        lines.append(f"{service:<14} {entry['engine']:<10} {entry['file']:<22} {len(entry['tables']):>3} tables "
                     f"{rows:>9} rows  schema {entry['alembic_version'] or '-'}")
    return "\n".join(lines)


# --- where things are ---------------------------------------------------------------

def service_urls(environ=None, services=SERVICES):
    """{service: database URL} as the services resolve them (crm_common.config.db_url) from ``environ``."""
    environ = os.environ if environ is None else environ
    var = environ.get("CRM_VAR_DIR") or os.path.join(os.getcwd(), "var")
    return {service: environ.get(f"CRM_{service.upper()}_DB_URL") or
            "sqlite:///" + os.path.join(var, f"{service}.db") for service in services}


def default_dir(folder=None, environ=None):
    environ = os.environ if environ is None else environ
    return folder or os.path.join(environ.get("CRM_VAR_DIR") or os.path.join(os.getcwd(), "var"), "backups")


def engine_of(url):
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def sqlite_path(url):
    path = make_url(url).database
    if not path or path == ":memory:":
        raise CommandFailed(f"{url}: an in-memory SQLite database cannot be backed up or restored")
    return path


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def current_commit():
    if os.environ.get("CRM_COMMIT"):
        return os.environ["CRM_COMMIT"]
    try:
        result = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def current_key_ids(environ=None):
    """The data key ids the system has now (never a key), or None when they cannot be read."""
    environ = os.environ if environ is None else environ
    try:
        if environ.get("CRM_DATA_KEYS"):
            return [part.split(":", 1)[0].strip() for part in environ["CRM_DATA_KEYS"].split(",") if part.strip()]
        path = environ.get("CRM_DATA_KEYS_FILE") or os.path.join(
            environ.get("CRM_VAR_DIR") or os.path.join(os.getcwd(), "var"), "data-keys.json")
        with open(path) as handle:
            return sorted(json.load(handle)["keys"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def key_warnings(manifest, environ=None):
    wanted = (manifest.get("data_keys") or {}).get("key_ids") or []
    have = current_key_ids(environ)
    if have is None:
        return ["no data keys are configured here: encrypted personal data cannot be read until they are"]
    missing = sorted(set(wanted) - set(have))
    if missing:
        return [f"the backup was made with data key(s) {', '.join(missing)}, which the keys configured here lack"]
    return []


# --- PostgreSQL -----------------------------------------------------------------------

def pg_params(url, dbname=None):
    parsed = make_url(url)
    params = {"host": parsed.host or "127.0.0.1", "port": parsed.port or 5432,
              "user": parsed.username or "postgres", "dbname": dbname or parsed.database}
    if parsed.password:
        params["password"] = parsed.password
    if parsed.query.get("sslmode"):
        params["sslmode"] = parsed.query["sslmode"]
    return params


def pg_env(url, environ=None, dbname=None):
    """The environment of pg_dump/pg_restore: the connection in PG* variables (no password on a command line)."""
    params = pg_params(url, dbname)
    env = dict(os.environ if environ is None else environ)
    env.update({"PGHOST": str(params["host"]), "PGPORT": str(params["port"]), "PGUSER": params["user"],
                "PGDATABASE": params["dbname"]})
    if "password" in params:
        env["PGPASSWORD"] = params["password"]
    if "sslmode" in params:
        env["PGSSLMODE"] = params["sslmode"]
    return env


def pg_connect(url, dbname=None, autocommit=False):
    import psycopg2

    connection = psycopg2.connect(**pg_params(url, dbname))
    connection.autocommit = autocommit
    return connection


def _pg_session(cursor):
    # Every setting that changes a row's text form, fixed, so a checksum does not depend on the client.
    cursor.execute("SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
                   "SET extra_float_digits = 1; SET bytea_output = 'hex'; SET statement_timeout = 0")


def _quote(name):
    return '"' + name.replace('"', '""') + '"'


def pg_table_stats(connection):
    """({table: {"rows", "checksum"}}, alembic version) of every table, in the connection's transaction."""
    with connection.cursor() as cursor:
        _pg_session(cursor)
        cursor.execute("""
            SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
            ORDER BY n.nspname, c.relname""")
        tables = cursor.fetchall()
    stats = {}
    version = None
    for oid, schema, table in tables:
        with connection.cursor() as cursor:
            cursor.execute("""
                SELECT a.attname, a.attcollation <> 0 FROM pg_index i
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                WHERE i.indrelid = %s AND i.indisprimary
                ORDER BY array_position(i.indkey::int2[], a.attnum)""", (oid,))
            key = cursor.fetchall()
        order = ", ".join(_quote(column) + (' COLLATE "C"' if collatable else "") for column, collatable in key) \
            or '_crm_row_::text COLLATE "C"'
        qualified = f"{_quote(schema)}.{_quote(table)}"
        name = table if schema == "public" else f"{schema}.{table}"
        digest, rows = hashlib.sha256(), 0
        with connection.cursor(name=f"crm_backup_{oid}") as cursor:
            cursor.itersize = 5000
            cursor.execute(f"SELECT _crm_row_::text FROM {qualified} AS _crm_row_ ORDER BY {order}")
            for (text,) in cursor:
                digest.update(text.encode("utf-8") + b"\n")
                rows += 1
        stats[name] = {"rows": rows, "checksum": digest.hexdigest()}
        if name == "alembic_version":
            with connection.cursor() as cursor:
                cursor.execute("SELECT version_num FROM alembic_version ORDER BY 1")
                version = ",".join(row[0] for row in cursor.fetchall()) or None
    return stats, version


def pg_backup(url, target, environ=None):
    """Dump one database into ``target`` (custom format) and describe the same snapshot."""
    connection = pg_connect(url)
    try:
        connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_export_snapshot()")
            snapshot = cursor.fetchone()[0]
        # The transaction stays open until pg_dump has taken the snapshot (and beyond: the checksums below).
        result = subprocess.run(
            ["pg_dump", "--format=custom", f"--snapshot={snapshot}", "--no-password", f"--file={target}"],
            env=pg_env(url, environ), capture_output=True, text=True)
        if result.returncode != 0:
            raise CommandFailed(f"pg_dump of {make_url(url).database} failed: {result.stderr.strip()}")
        stats, version = pg_table_stats(connection)
        connection.rollback()
    finally:
        connection.close()
    return stats, version


def pg_describe(url):
    connection = pg_connect(url)
    try:
        connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
        return pg_table_stats(connection)
    finally:
        connection.rollback()
        connection.close()


def pg_recreate(url, dbname=None):
    """Drop and create the database (connected to the server's ``postgres`` database); False when not allowed."""
    import psycopg2

    dbname = dbname or make_url(url).database
    try:
        admin = pg_connect(url, dbname="postgres", autocommit=True)
    except psycopg2.Error:
        return False
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {_quote(dbname)} WITH (FORCE)")
            cursor.execute(f"CREATE DATABASE {_quote(dbname)}")
        return True
    except psycopg2.errors.InsufficientPrivilege:
        return False
    finally:
        admin.close()


def pg_drop(url, dbname):
    with closing(pg_connect(url, dbname="postgres", autocommit=True)) as admin, admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {_quote(dbname)} WITH (FORCE)")


def pg_restore(url, dump, environ=None, recreate=True, dbname=None):
    """Load a custom-format dump: into a freshly created database, or (not allowed to create one)
    over the existing database's objects (``--clean --if-exists``)."""
    command = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
               "--no-password", f"--dbname={dbname or make_url(url).database}"]
    if not (recreate and pg_recreate(url, dbname)):
        command += ["--clean", "--if-exists"]
    result = subprocess.run(command + [str(dump)], env=pg_env(url, environ, dbname), capture_output=True, text=True)
    if result.returncode != 0:
        raise CommandFailed(f"pg_restore into {dbname or make_url(url).database} failed: {result.stderr.strip()}")


# --- SQLite -----------------------------------------------------------------------------

def _sqlite_value(value):
    return value.hex() if isinstance(value, (bytes, memoryview)) else str(value)


def sqlite_table_stats(connection):
    tables = [row[0] for row in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    stats, version = {}, None
    for table in tables:
        columns = connection.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
        key = [column[1] for column in sorted(columns, key=lambda c: c[5]) if column[5]]
        order = ", ".join(_quote(c) for c in key) or ", ".join(str(i + 1) for i in range(len(columns)))
        digest, rows = hashlib.sha256(), 0
        for row in connection.execute(f"SELECT * FROM {_quote(table)} ORDER BY {order}"):
            digest.update(json.dumps(list(row), default=_sqlite_value, ensure_ascii=False).encode("utf-8") + b"\n")
            rows += 1
        stats[table] = {"rows": rows, "checksum": digest.hexdigest()}
        if table == "alembic_version":
            version = ",".join(r[0] for r in connection.execute(
                "SELECT version_num FROM alembic_version ORDER BY 1")) or None
    return stats, version


def sqlite_copy(source_path, target_path):
    """Copy a SQLite database with the online backup API (consistent while others read and write it)."""
    with closing(sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)) as source, \
            closing(sqlite3.connect(target_path, timeout=30)) as target:
        source.backup(target)
        # The copy is one self-contained file: rollback journal, not the source's WAL.
        target.execute("PRAGMA journal_mode=DELETE")


def sqlite_describe(path, immutable=False):
    """``immutable``: a backup copy, read without ever writing beside it (no -wal, no -shm)."""
    mode = "ro&immutable=1" if immutable else "ro"
    with closing(sqlite3.connect(f"file:{path}?mode={mode}", uri=True)) as connection:
        return sqlite_table_stats(connection)


# --- backup -------------------------------------------------------------------------------

def backup(folder, environ=None, services=SERVICES, now=None):
    """Back up every service's database into ``folder/crm-backup-<timestamp>``; (path, manifest).

    Made in ``<name>.partial`` and renamed when complete, so a backup folder
    with a manifest is always a whole backup.
    """
    now = now or datetime.now(timezone.utc)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = NAME_PREFIX + now.strftime(NAME_FORMAT)
    final = folder / name
    if final.exists():
        raise CommandFailed(f"{final} exists already")
    partial = folder / (name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        manifest = {"format": FORMAT, "created_at": now.isoformat().replace("+00:00", "Z"),
                    "commit": current_commit(), "checksum_methods": CHECKSUM_METHODS, "services": {},
                    "data_keys": {"included": False, "key_ids": current_key_ids(environ)}}
        for service, url in service_urls(environ, services).items():
            engine = engine_of(url)
            if engine == "postgresql":
                file = f"{service}.dump"
                stats, version = pg_backup(url, partial / file, environ)
                database = make_url(url).database
            else:
                file = f"{service}.sqlite3"
                source = sqlite_path(url)
                if not os.path.exists(source):
                    raise CommandFailed(f"{service}: no database at {source}")
                sqlite_copy(source, partial / file)
                stats, version = sqlite_describe(partial / file, immutable=True)
                database = os.path.basename(source)
            manifest["services"][service] = {
                "engine": engine, "database": database, "file": file, "sha256": sha256_file(partial / file),
                "bytes": (partial / file).stat().st_size, "alembic_version": version, "tables": stats}
        write_manifest(partial, manifest)
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final, manifest


def write_manifest(folder, manifest):
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (Path(folder) / MANIFEST).write_text(text)
    (Path(folder) / MANIFEST_SUM).write_text(f"{hashlib.sha256(text.encode()).hexdigest()}  {MANIFEST}\n")


def read_manifest(folder):
    """The manifest, after checking it against its sha256 sidecar (CommandFailed when it does not match)."""
    folder = Path(folder)
    try:
        data = (folder / MANIFEST).read_bytes()
        expected = (folder / MANIFEST_SUM).read_text().split()[0]
    except (OSError, IndexError) as error:
        raise CommandFailed(f"{folder}: not a complete backup ({error})")
    if hashlib.sha256(data).hexdigest() != expected:
        raise CommandFailed(f"{folder}: {MANIFEST} does not match {MANIFEST_SUM} (changed or damaged)")
    return json.loads(data)


def compare(service, entry, stats, version):
    """Differences between a manifest entry and what a database holds."""
    found = []
    if version != entry["alembic_version"]:
        found.append(f"{service}: schema version {version}, manifest {entry['alembic_version']}")
    for table in sorted(set(entry["tables"]) | set(stats)):
        want, got = entry["tables"].get(table), stats.get(table)
        if want is None:
            found.append(f"{service}.{table}: table not in the manifest")
        elif got is None:
            found.append(f"{service}.{table}: table missing")
        elif want["rows"] != got["rows"]:
            found.append(f"{service}.{table}: {got['rows']} rows, manifest {want['rows']}")
        elif want["checksum"] != got["checksum"]:
            found.append(f"{service}.{table}: checksum differs from the manifest")
    return found


# --- verify -------------------------------------------------------------------------------

def verify(path, deep=False, environ=None):
    """Problems found in a backup (empty: it is whole): the manifest's sidecar, each file's sha256;
    ``deep``: each file restored into a scratch database, its counts and checksums."""
    path = Path(path)
    try:
        manifest = read_manifest(path)
    except CommandFailed as failure:
        return [str(failure)]
    found = []
    for service, entry in manifest["services"].items():
        file = path / entry["file"]
        if not file.is_file():
            found.append(f"{service}: {entry['file']} is missing")
            continue
        if sha256_file(file) != entry["sha256"]:
            found.append(f"{service}: {entry['file']} does not match its sha256 in the manifest")
            continue
        if deep:
            found += compare(service, entry, *scratch_describe(service, entry, file, environ))
    return found


def scratch_describe(service, entry, file, environ=None):
    """(stats, version) of a backup file restored somewhere throwaway."""
    if entry["engine"] == "sqlite":
        with tempfile.TemporaryDirectory(prefix="crm-verify-") as scratch:
            copy = os.path.join(scratch, "copy.sqlite3")
            sqlite_copy(file, copy)
            with closing(sqlite3.connect(copy)) as connection:
                check = connection.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise CommandFailed(f"{service}: integrity check failed: {check}")
            return sqlite_describe(copy, immutable=True)
    url = service_urls(environ, [service])[service]
    if engine_of(url) != "postgresql":
        raise CommandFailed(f"{service}: a deep check of a PostgreSQL dump needs the service's PostgreSQL URL")
    scratch = f"crm_verify_{service}_{os.urandom(4).hex()}"
    try:
        pg_restore(url, file, environ, recreate=True, dbname=scratch)
        return pg_describe(make_url(url).set(database=scratch).render_as_string(hide_password=False))
    finally:
        pg_drop(url, scratch)


# --- restore ------------------------------------------------------------------------------

def rows_held(url):
    """{table: rows} of the tables of a database that hold any (empty when it is empty or missing).

    The schema version alone does not count: a database the services have only migrated holds no data."""
    if engine_of(url) == "sqlite":
        path = sqlite_path(url)
        if not os.path.exists(path):
            return {}
        stats, _ = sqlite_describe(path)
    else:
        import psycopg2

        try:
            stats, _ = pg_describe(url)
        except psycopg2.OperationalError as error:
            if "does not exist" in str(error):
                return {}
            raise
    return {table: s["rows"] for table, s in stats.items() if s["rows"] and table != "alembic_version"}


def restore(path, force=False, environ=None, services=None):
    """Restore each service's database from a backup; (manifest, differences from the manifest afterwards).

    Every target is checked before any is touched: one that holds rows is
    refused unless ``force``. Stop the services first (a running service
    would write into the database while it is being replaced).
    """
    path = Path(path)
    manifest = read_manifest(path)
    chosen = sorted((s for s in manifest["services"] if not services or s in services),
                    key=lambda s: SERVICES.index(s) if s in SERVICES else len(SERVICES))
    missing = set(services or ()) - set(manifest["services"])
    if missing:
        raise CommandFailed(f"the backup has no {', '.join(sorted(missing))}")
    urls = service_urls(environ, chosen)
    refused = []
    for service in chosen:
        entry = manifest["services"][service]
        if sha256_file(path / entry["file"]) != entry["sha256"]:
            raise CommandFailed(f"{service}: {entry['file']} does not match its sha256 in the manifest")
        if engine_of(urls[service]) != entry["engine"]:
            raise CommandFailed(f"{service}: the backup is {entry['engine']}, the database here "
                                f"{engine_of(urls[service])}")
        held = rows_held(urls[service])
        if held and not force:
            refused.append(f"{service} ({sum(held.values())} rows in {len(held)} tables)")
    if refused:
        raise CommandFailed("refusing to overwrite databases that hold rows: " + ", ".join(refused)
                            + " (--force replaces them)")
    found = []
    for service in chosen:
        entry, url = manifest["services"][service], urls[service]
        if entry["engine"] == "sqlite":
            target = sqlite_path(url)
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
            with closing(sqlite3.connect(f"file:{path / entry['file']}?mode=ro&immutable=1", uri=True)) as source, \
                    closing(sqlite3.connect(target, timeout=30)) as destination:
                source.backup(destination)
            stats, version = sqlite_describe(target)
        else:
            pg_restore(url, path / entry["file"], environ)
            stats, version = pg_describe(url)
        found += compare(service, entry, stats, version)
    return manifest, found


# --- retention ----------------------------------------------------------------------------

def backup_time(name):
    match = NAME_PATTERN.match(name)
    if not match:
        return None
    return datetime.strptime(match.group(1), NAME_FORMAT).replace(tzinfo=timezone.utc)


def retained(times, keep_daily, keep_weekly):
    """Which backup times a policy keeps: the newest of each of the ``keep_daily`` most recent days
    that have a backup, and of each of the ``keep_weekly`` most recent ISO weeks that have one (UTC).

    Days and weeks without a backup do not count, so a pause in the schedule
    never deletes the last good backups.
    """
    kept = set()
    for count, bucket in ((keep_daily, lambda t: t.date()), (keep_weekly, lambda t: t.isocalendar()[:2])):
        seen = []
        for time in sorted(times, reverse=True):
            key = bucket(time)
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            kept.add(time)
    return kept


def prune(folder, keep_daily, keep_weekly, dry_run=False):
    """Delete the complete backups in ``folder`` the policy does not keep; their names, oldest first.

    Only folders named like a backup and holding a manifest count; anything
    else (a backup still being made, other files) is left alone.
    """
    if keep_daily < 0 or keep_weekly < 0 or keep_daily + keep_weekly == 0:
        raise CommandFailed("keep at least one backup (--keep-daily and --keep-weekly are counts >= 0, not both 0)")
    folder = Path(folder)
    if not folder.is_dir():
        return []
    backups = {}
    for entry in folder.iterdir():
        time = backup_time(entry.name)
        if time and entry.is_dir() and (entry / MANIFEST).exists():
            backups[time] = entry
    keep = retained(list(backups), keep_daily, keep_weekly)
    deleted = []
    for time in sorted(backups):
        if time not in keep:
            if not dry_run:
                shutil.rmtree(backups[time])
            deleted.append(backups[time].name)
    return deleted
