"""``crmctl rotate-keys``: every service re-encrypts what it holds under the current key.

Each service's ``rotate_data_keys`` RPC (crm_common.ops) re-reads the key
file, re-encrypts, in committed batches, every value of its encrypted columns
that is not under the current key (plain text included), counts what is left
and records the audit entry ``keys.rotated``. The services run and keep
serving meanwhile; writes made during the rotation are already under the new
key. Running it again is harmless: only what is still stale is touched.
"""
from crm_common.crmctl.common import (
    DEFAULT_RPC_TIMEOUT, SERVICES, CommandFailed, Failure, add_rpc_arguments, call_every_service,
)


def add_parsers(subparsers):
    rotate = subparsers.add_parser(
        "rotate-keys", help="every service re-encrypts its data under the current key (the system keeps running)")
    add_rpc_arguments(rotate)
    rotate.set_defaults(handler=cmd_rotate_keys)


def rotate_keys(uri=None, timeout=DEFAULT_RPC_TIMEOUT, services=SERVICES):
    """{service: rotate_data_keys answer or Failure}."""
    return call_every_service("rotate_data_keys", uri, timeout, services)


def problems(results):
    """What keeps a rotation from being complete: failures, values left under old keys, services
    that disagree about the current key (they do not share one keyring)."""
    found = []
    key_ids = {}
    for service, result in results.items():
        if isinstance(result, Failure):
            found.append(f"{service}: {result}")
            continue
        key_ids.setdefault(result["current_key_id"], []).append(service)
        left = {column: n for column, n in result["remaining"].items() if n}
        if left:
            found.append(f"{service}: {sum(left.values())} value(s) still not under {result['current_key_id']} "
                         f"({', '.join(f'{column} {n}' for column, n in sorted(left.items()))})")
    if len(key_ids) > 1:
        found.append("the services disagree about the current key: " + "; ".join(
            f"{kid}: {', '.join(names)}" for kid, names in sorted(key_ids.items())))
    return found


def format_report(results):
    """A table per service: each encrypted column, the values re-encrypted and those left."""
    lines = []
    for service, result in results.items():
        if isinstance(result, Failure):
            lines += [f"{service}: FAILED: {result}", ""]
            continue
        lines.append(f"{service} (current key {result['current_key_id']})")
        columns = sorted(set(result["reencrypted"]) | set(result["remaining"]))
        width = max([len("column")] + [len(column) for column in columns])
        lines.append(f"  {'column':<{width}}  {'re-encrypted':>12}  {'remaining':>9}")
        for column in columns:
            lines.append(f"  {column:<{width}}  {result['reencrypted'].get(column, 0):>12}  "
                         f"{result['remaining'].get(column, 0):>9}")
        if not columns:
            lines.append("  (no encrypted columns)")
        lines.append("")
    return "\n".join(lines)


def cmd_rotate_keys(args):
    results = rotate_keys(args.amqp_uri, args.timeout, tuple(args.services or SERVICES))
    print(format_report(results))
    found = problems(results)
    if found:
        raise CommandFailed("the rotation is not complete:\n  " + "\n  ".join(found))
    kid = next(iter(results.values()))["current_key_id"]
    print(f"every service holds its data under {kid}; older keys can be retired (crmctl keys retire <kid>)")
    return 0
