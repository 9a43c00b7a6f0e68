"""crmctl: the operator's command line for a running CRM.

    crmctl keys show                 the key file, its key ids and which is current (never a key)
    crmctl keys new [--print-env]    add a fresh key and make it current
    crmctl rotate-keys               every service re-encrypts its data under the current key
    crmctl keys retire <kid>         remove an old key once no service holds a value under it
    crmctl backup [--dir D]          every service's database into one timestamped folder with a manifest
    crmctl verify <backup> [--deep]  check a backup's files (and restored contents) against its manifest
    crmctl restore <backup> [--force] restore every service's database, then compare with the manifest
    crmctl backups prune --keep-daily N --keep-weekly M   delete backups the retention policy drops
    crmctl dlq list [--service S] [--json]   dead-lettered events (metadata only), left in place
    crmctl dlq replay (--event-id ID | --all) [--dry-run]  back to the handler that gave up on them
    crmctl dlq purge (--event-id ID | --all) --yes         delete dead letters for good
    crmctl migrate <folder> --mapping M --base-url URL (--api-key K | --email E --password P) [--dry-run]
                                     a legacy CRM's CSV/XLSX export through the API, with an integrity report

Installed as a console script by services/common (``make venv``). Each
subcommand lives in a module of this package: the module's ``add_parsers``
registers its argparse subcommands, each pointing at one ``cmd_*`` function
that parses nothing itself and calls a plain function tests can call too.
A new group of subcommands (backup, restore, migrate, dlq ...) is a new
module listed in ``COMMAND_MODULES``.
"""
import argparse
import logging
import sys
import warnings

# nameko imports eventlet, which warns on import that it is deprecated: noise
# on an operator's terminal, and nothing they can act on.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from crm_common.crmctl import backup, dlq, keys, migrate, rotation  # noqa: E402
from crm_common.crmctl.common import CommandFailed  # noqa: E402

COMMAND_MODULES = (keys, rotation, backup, dlq, migrate)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="crmctl", description="Operate a running CRM (run it with the services' environment).")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.add_parsers(subparsers)
    return parser


def main(argv=None):
    # The AMQP client logs harmless chatter when a connection closes ("Received method ... during closing").
    logging.getLogger("amqp").setLevel(logging.ERROR)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except CommandFailed as failure:
        print(f"crmctl: {failure}", file=sys.stderr)
        return failure.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
