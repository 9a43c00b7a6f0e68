"""Configuration read from environment variables.

Every service reads the same small set of variables; the names are listed in
the configuration table of docs/configuration.md. Values are read at call time so tests can
set them with monkeypatch.
"""
import os

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"


def env(name, default=None, cast=str):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return cast(value)


def env_bool(name, default=False):
    return env(name, default, cast=lambda v: v.strip().lower() in ("1", "true", "yes", "on"))


def var_dir():
    """Where a service keeps local state (SQLite files, generated secrets)."""
    path = env("CRM_VAR_DIR", os.path.join(os.getcwd(), "var"))
    os.makedirs(path, exist_ok=True)
    return path


def db_url(service_name):
    """The database URL of one service: CRM_<SERVICE>_DB_URL, else a SQLite file under var/."""
    default = "sqlite:///" + os.path.join(var_dir(), f"{service_name}.db")
    return env(f"CRM_{service_name.upper()}_DB_URL", default)


def rpc_timeout():
    """Seconds the gateway waits for a service before answering 503/504."""
    return env("CRM_RPC_TIMEOUT", 5.0, float)
