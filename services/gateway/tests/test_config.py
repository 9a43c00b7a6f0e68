"""config.yaml, read the way ``nameko run --config`` reads it."""
import logging.config
from pathlib import Path

import pytest
import yaml

CONFIG = Path(__file__).parents[1] / "config.yaml"


@pytest.fixture
def load_config():
    from nameko.cli.main import setup_yaml_parser

    setup_yaml_parser()
    return lambda: yaml.safe_load(CONFIG.read_text())


def test_defaults(load_config, monkeypatch):
    for name in ("AMQP_URI", "CRM_BIND_HOST", "CRM_GATEWAY_PORT", "CRM_GATEWAY_MAX_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    config = load_config()
    assert config["AMQP_URI"] == "amqp://guest:guest@127.0.0.1:5672/"
    assert config["WEB_SERVER_ADDRESS"] == "127.0.0.1:8000"
    assert config["max_workers"] == 20


def test_both_variables_of_the_bind_address_are_substituted(load_config, monkeypatch):
    monkeypatch.setenv("CRM_BIND_HOST", "0.0.0.0")
    monkeypatch.setenv("CRM_GATEWAY_PORT", "9100")
    monkeypatch.setenv("CRM_GATEWAY_MAX_WORKERS", "64")
    config = load_config()
    assert config["WEB_SERVER_ADDRESS"] == "0.0.0.0:9100"
    assert config["max_workers"] == 64


def test_logging_is_one_json_object_per_line(load_config, capsys):
    import json

    config = load_config()["LOGGING"]
    config["handlers"]["console"]["stream"] = "ext://sys.stdout"
    logging.config.dictConfig(config)
    try:
        logging.getLogger("gateway.test").info("hello")
        line = capsys.readouterr().out.strip().splitlines()[-1]
        entry = json.loads(line)
        assert entry["service"] == "gateway" and entry["message"] == "hello" and entry["level"] == "info"
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
