"""nameko dependency providers of the gateway: its database (with the first
admin), and the tools that sign tokens and hash passwords."""
import ctypes
import logging
import os

from eventlet import tpool
from eventlet.semaphore import Semaphore
from nameko.extensions import DependencyProvider, SharedExtension

from crm_common.config import env, var_dir
from crm_common.db import Database

from gateway.auth import AccessTokens, PasswordHashing, RevocationList, SessionRevocations, load_jwt_secret
from gateway.users import ADMIN_PASSWORD_FILE, DEFAULT_ADMIN_EMAIL, ensure_first_admin

log = logging.getLogger(__name__)


class GatewayDatabase(Database):
    """The gateway's database; creates the first admin once the schema is migrated.

    ``setup`` (the base class) migrates; ``start`` runs after every extension's
    setup, so the tables exist by then.
    """

    def start(self):
        super().start()
        with self.Session() as session:
            ensure_first_admin(
                session,
                PasswordHashing(),
                email=env("CRM_ADMIN_EMAIL", DEFAULT_ADMIN_EMAIL),
                password=env("CRM_ADMIN_PASSWORD"),
                password_file=os.path.join(var_dir(), ADMIN_PASSWORD_FILE),
            )


class SigningKeys(SharedExtension):
    """The access-token codec, shared by the HTTP entrypoints (which verify
    tokens) and the service (which issues them).

    Verifying a token includes asking whether its session was signed out: the
    RevocationList, which reads the gateway database's revoked_sessions now
    and then. That happens in the entrypoint, before any worker (and its
    session) exists, so the reads borrow a connection from the service's own
    engine (GatewayDatabase) rather than opening a second pool.
    """

    def setup(self):
        self._database = None
        self.revocations = RevocationList(
            self._revoked_since, refresh_seconds=env("CRM_REVOCATION_REFRESH_SECONDS", 1.0, float))
        self.access_tokens = AccessTokens(load_jwt_secret(), is_revoked=self.revocations.is_revoked)

    def stop(self):
        self.revocations.close()

    kill = stop

    def _revoked_since(self, since):
        if self._database is None:
            self._database = next(dependency for dependency in self.container.dependencies
                                  if isinstance(dependency, Database))
        with self._database.Session() as session:
            return SessionRevocations(session).listed_since(since)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def _return_large_blocks_to_the_system():
    """Pin glibc's mmap threshold, so argon2's 19 MiB blocks are mapped and unmapped each time.

    By default glibc raises the threshold after the first such block is freed;
    later ones then come from per-thread arenas, which keep them: each thread of
    eventlet's pool held ~19 MiB after a burst of sign-ins, the gateway grew
    from ~100 MB to ~450 MB and stayed there (its Kubernetes limit is 512 MiB).
    No-op where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        pass


class AuthTools:
    def __init__(self, passwords, access_tokens):
        self.passwords = passwords
        self.access_tokens = access_tokens


class Auth(DependencyProvider):
    keys = SigningKeys()

    def setup(self):
        # argon2 holds the CPU for tens of milliseconds; in eventlet's thread
        # pool (argon2-cffi releases the GIL) other requests keep being served.
        # At most one hash per core at a time: more would not finish sooner,
        # and each holds 19 MiB; with the pool's 20 threads a burst of sign-ins
        # took the gateway from ~100 MB to ~450 MB, which it kept.
        hashing_slots = Semaphore(os.cpu_count() or 2)
        _return_large_blocks_to_the_system()

        def run_blocking(function, *args):
            with hashing_slots:
                return tpool.execute(function, *args)
        self.passwords = PasswordHashing(run_blocking=run_blocking)

    def get_dependency(self, worker_ctx):
        return AuthTools(self.passwords, self.keys.access_tokens)
