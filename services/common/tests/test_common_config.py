"""crm_common.config: environment variables with defaults."""
import os

import pytest

from crm_common import config


def test_env_returns_default_when_unset_or_empty(monkeypatch):
    monkeypatch.delenv("CRM_TEST_SETTING", raising=False)
    assert config.env("CRM_TEST_SETTING", "fallback") == "fallback"
    assert config.env("CRM_TEST_SETTING") is None
    monkeypatch.setenv("CRM_TEST_SETTING", "")
    assert config.env("CRM_TEST_SETTING", "fallback") == "fallback"


def test_env_override_is_cast(monkeypatch):
    monkeypatch.setenv("CRM_TEST_SETTING", "42")
    assert config.env("CRM_TEST_SETTING", 7) == "42"
    assert config.env("CRM_TEST_SETTING", 7, int) == 42
    # A default is returned as given, not cast.
    monkeypatch.delenv("CRM_TEST_SETTING")
    assert config.env("CRM_TEST_SETTING", 7, int) == 7


def test_env_with_invalid_value_fails_loudly(monkeypatch):
    monkeypatch.setenv("CRM_TEST_SETTING", "not-a-number")
    with pytest.raises(ValueError):
        config.env("CRM_TEST_SETTING", 1.0, float)


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "yes", "on", " On "])
def test_env_bool_true_values(monkeypatch, text):
    monkeypatch.setenv("CRM_TEST_FLAG", text)
    assert config.env_bool("CRM_TEST_FLAG") is True


@pytest.mark.parametrize("text", ["0", "false", "no", "off", "nonsense"])
def test_env_bool_false_values(monkeypatch, text):
    monkeypatch.setenv("CRM_TEST_FLAG", text)
    assert config.env_bool("CRM_TEST_FLAG", True) is False


def test_env_bool_default_when_unset(monkeypatch):
    monkeypatch.delenv("CRM_TEST_FLAG", raising=False)
    assert config.env_bool("CRM_TEST_FLAG") is False
    assert config.env_bool("CRM_TEST_FLAG", True) is True


def test_db_url_defaults_to_sqlite_file_under_var_dir(monkeypatch, tmp_path):
    var = tmp_path / "state"
    monkeypatch.setenv("CRM_VAR_DIR", str(var))
    monkeypatch.delenv("CRM_SALES_DB_URL", raising=False)
    assert config.db_url("sales") == "sqlite:///" + os.path.join(str(var), "sales.db")
    assert var.is_dir()  # created so SQLite can open the file


def test_db_url_default_var_dir_is_cwd_var(monkeypatch, tmp_path):
    monkeypatch.delenv("CRM_VAR_DIR", raising=False)
    monkeypatch.delenv("CRM_SALES_DB_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert config.db_url("sales") == "sqlite:///" + os.path.join(str(tmp_path), "var", "sales.db")


def test_db_url_override_per_service(monkeypatch, tmp_path):
    monkeypatch.setenv("CRM_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("CRM_SALES_DB_URL", "postgresql+psycopg2://crm@db/crm_sales")
    assert config.db_url("sales") == "postgresql+psycopg2://crm@db/crm_sales"
    # Only that service's variable counts.
    monkeypatch.delenv("CRM_CUSTOMERS_DB_URL", raising=False)
    assert config.db_url("customers").startswith("sqlite:///")


def test_rpc_timeout_default_and_override(monkeypatch):
    monkeypatch.delenv("CRM_RPC_TIMEOUT", raising=False)
    assert config.rpc_timeout() == 5.0
    monkeypatch.setenv("CRM_RPC_TIMEOUT", "0.25")
    assert config.rpc_timeout() == 0.25
