"""``crmctl keys ...``: the data keys of crm_common.crypto.

The key file (``CRM_DATA_KEYS_FILE``, else ``$CRM_VAR_DIR/data-keys.json``)
is shared by every service process of one system; running services re-read it
when it changes, so a key added here is used without a restart. Deployments
that configure keys through the environment (``CRM_DATA_KEYS``) get the new
value printed (``--print-env``) to put into their secret store; nothing here
can change another process's environment.

Key material is never printed, except the ``--print-env`` value asked for.
"""
import fcntl
import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone

from crm_common import crypto
from crm_common.crmctl.common import (
    DEFAULT_RPC_TIMEOUT, SERVICES, CommandFailed, Failure, add_rpc_arguments, call_every_service,
)
from crm_common.data_keys import UNKNOWN


def add_parsers(subparsers):
    keys = subparsers.add_parser("keys", help="show, add and retire data-encryption keys")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="KEYS_COMMAND", required=True)

    init = keys_sub.add_parser("init", help="create the key file if it does not exist yet")
    init.add_argument("--file", help="the key file (default: $CRM_DATA_KEYS_FILE or $CRM_VAR_DIR/data-keys.json)")
    init.set_defaults(handler=cmd_keys_init)

    show = keys_sub.add_parser("show", help="where the keys are, their ids and the current one (never a key)")
    show.add_argument("--file", help="the key file (default as for init)")
    show.set_defaults(handler=cmd_keys_show)

    new = keys_sub.add_parser("new", help="add a fresh random key and make it current; prints its id")
    new.add_argument("--file", help="the key file (default as for init)")
    new.add_argument("--print-env", action="store_true",
                     help="also print the CRM_DATA_KEYS value with the new key first (for deployments that "
                          "configure keys through the environment; this prints key material)")
    new.set_defaults(handler=cmd_keys_new)

    retire = keys_sub.add_parser(
        "retire", help="remove an old key, only when no service holds a value under it any more")
    retire.add_argument("kid", help="the key id to remove")
    retire.add_argument("--file", help="the key file (default as for init)")
    retire.add_argument("--print-env", action="store_true",
                        help="for keys configured through CRM_DATA_KEYS: print the value without the key")
    # Every service, always: a key is only unused when no service holds a value under it.
    add_rpc_arguments(retire, choose_services=False)
    retire.set_defaults(handler=cmd_keys_retire)


# --- the key file ---------------------------------------------------------------

def env_configured():
    """True when the services take their keys from CRM_DATA_KEYS rather than a file."""
    return bool(os.environ.get("CRM_DATA_KEYS"))


def key_file(path=None):
    return path or crypto.keys_file_path()


def read_keys(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise CommandFailed(f"no key file at {path} (crmctl keys init creates one)")


@contextmanager
def locked(path):
    """Serialise crmctl's own changes to one key file (two operators, or a script run twice)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def init_keys(path=None):
    """Create the key file unless it exists; (path, created)."""
    path = key_file(path)
    created = crypto.write_keys_file(path, crypto.new_keys_document(), replace=False)
    return path, created


def describe_keys(path=None):
    """{"source", "file", "current", "key_ids"}: where the keys come from, never the keys."""
    if env_configured():
        ring = crypto.Keyring.from_env(os.environ["CRM_DATA_KEYS"], os.environ.get("CRM_BLIND_INDEX_KEY"))
        return {"source": "CRM_DATA_KEYS", "file": None, "current": ring.current, "key_ids": list(ring.keys)}
    path = key_file(path)
    document = read_keys(path)
    return {"source": "file", "file": path, "current": document["current"], "key_ids": list(document["keys"])}


def new_key_id(existing, now=None):
    """A key id that says when it was made ("k20261201T093000"), unique among ``existing``."""
    base = (now or datetime.now(timezone.utc)).strftime("k%Y%m%dT%H%M%S")
    kid, n = base, 1
    while kid in existing:
        n += 1
        kid = f"{base}.{n}"
    return kid


def new_key(path=None):
    """Add a fresh random key to the key file and make it current; returns its id.

    The file is replaced atomically (the services re-read it within a few
    seconds, and at once when they meet a value under a key id they do not
    know); it is created when missing.
    """
    path = key_file(path)
    with locked(path):
        if crypto.write_keys_file(path, crypto.new_keys_document(new_key_id(())), replace=False):
            return read_keys(path)["current"]
        document = read_keys(path)
        kid = new_key_id(document["keys"])
        document["keys"][kid] = crypto.generate_key()
        document["current"] = kid
        crypto.write_keys_file(path, document)
    return kid


def new_env_value(current_spec):
    """(kid, CRM_DATA_KEYS value) with a fresh key first, followed by the keys of ``current_spec``."""
    existing = [part.strip().partition(":")[0] for part in (current_spec or "").split(",") if part.strip()]
    kid = new_key_id(existing)
    parts = [f"{kid}:{crypto.generate_key()}"] + [part.strip() for part in (current_spec or "").split(",")
                                                   if part.strip()]
    return kid, ",".join(parts)


def env_value_of_file(path):
    """The CRM_DATA_KEYS value holding the key file's keys, current first."""
    document = read_keys(path)
    ordered = [document["current"]] + [kid for kid in document["keys"] if kid != document["current"]]
    return ",".join(f"{kid}:{document['keys'][kid]}" for kid in ordered)


def retire_key(kid, path=None, uri=None, timeout=DEFAULT_RPC_TIMEOUT, services=SERVICES):
    """Remove ``kid`` from the key file once every service reports no value under it.

    Returns the services' usage reports. Refuses (CommandFailed, file
    untouched) when ``kid`` is current or unknown, when a service does not
    answer (nobody can say it holds nothing), when a service still runs with
    ``kid`` as its current key (it has not seen the new key yet), or when any
    value is sealed under ``kid``.
    """
    path = key_file(path)
    document = read_keys(path)
    check_retirable(kid, document["current"], list(document["keys"]))
    usages = call_every_service("data_key_usage", uri, timeout, services)
    check_unused(kid, usages)
    with locked(path):
        document = read_keys(path)
        check_retirable(kid, document["current"], list(document["keys"]))
        del document["keys"][kid]
        crypto.write_keys_file(path, document)
    return usages


def retire_env_value(kid, current_spec, uri=None, timeout=DEFAULT_RPC_TIMEOUT, services=SERVICES):
    """For keys in CRM_DATA_KEYS: the value without ``kid``, after the same checks as ``retire_key``."""
    ring = crypto.Keyring.from_env(current_spec, os.environ.get("CRM_BLIND_INDEX_KEY"))
    check_retirable(kid, ring.current, list(ring.keys))
    check_unused(kid, call_every_service("data_key_usage", uri, timeout, services))
    return ",".join(part.strip() for part in current_spec.split(",")
                    if part.strip() and part.strip().partition(":")[0] != kid)


def check_retirable(kid, current, key_ids):
    if kid not in key_ids:
        raise CommandFailed(f"there is no key {kid!r} (keys: {', '.join(key_ids)})")
    if kid == current:
        raise CommandFailed(f"{kid} is the current key: make a new one current first (crmctl keys new), "
                            "then crmctl rotate-keys")


def check_unused(kid, usages):
    """CommandFailed naming every service and column that still needs ``kid``."""
    problems = []
    for service, usage in usages.items():
        if isinstance(usage, Failure):
            problems.append(f"{service}: {usage} (cannot tell whether it holds values under {kid})")
            continue
        if usage["current_key_id"] == kid:
            problems.append(f"{service}: still writes under {kid} (it has not read the new key yet)")
        for column, counts in sorted(usage["columns"].items()):
            if counts.get(kid):
                problems.append(f"{service}: {counts[kid]} value(s) of {column} under {kid}")
            if counts.get(UNKNOWN):
                problems.append(f"{service}: {counts[UNKNOWN]} value(s) of {column} under a key id it "
                                "does not have")
    if problems:
        raise CommandFailed(f"not retiring {kid} (crmctl rotate-keys moves values to the current key):\n  "
                            + "\n  ".join(problems))


# --- the subcommands ----------------------------------------------------------------

def cmd_keys_init(args):
    if env_configured():
        print("keys come from CRM_DATA_KEYS: no key file is used")
        return 0
    path, created = init_keys(args.file)
    state = "created" if created else "exists"
    print(f"data keys: {path} ({state}; a secret: back it up, and keep it out of every database backup)")
    return 0


def cmd_keys_show(args):
    described = describe_keys(args.file)
    where = described["file"] or "CRM_DATA_KEYS"
    print(f"keys from {where}")
    for kid in described["key_ids"]:
        print(f"  {kid}{'  (current)' if kid == described['current'] else ''}")
    return 0


def cmd_keys_new(args):
    if env_configured():
        if not args.print_env:
            raise CommandFailed("keys come from CRM_DATA_KEYS: use --print-env and put the printed value into "
                                "every service's environment (then restart them and run crmctl rotate-keys)")
        kid, value = new_env_value(os.environ["CRM_DATA_KEYS"])
        print(f"new key {kid} (current once the services run with this value):")
        print(f"CRM_DATA_KEYS={value}")
        return 0
    kid = new_key(args.file)
    print(f"new key {kid} is current in {key_file(args.file)}; running services use it within "
          f"{crypto.RELOAD_INTERVAL:g} s. Next: crmctl rotate-keys")
    if args.print_env:
        print(f"CRM_DATA_KEYS={env_value_of_file(key_file(args.file))}")
        print(f"CRM_BLIND_INDEX_KEY={read_keys(key_file(args.file))['blind_index_key']}")
    return 0


def cmd_keys_retire(args):
    services = SERVICES
    if env_configured():
        if not args.print_env:
            raise CommandFailed("keys come from CRM_DATA_KEYS: use --print-env to get the value without the key")
        value = retire_env_value(args.kid, os.environ["CRM_DATA_KEYS"], args.amqp_uri, args.timeout, services)
        print(f"no service holds a value under {args.kid}; use this value in every service's environment:")
        print(f"CRM_DATA_KEYS={value}")
        return 0
    retire_key(args.kid, args.file, args.amqp_uri, args.timeout, services)
    print(f"retired {args.kid}: no service held a value under it; removed from {key_file(args.file)}")
    return 0

