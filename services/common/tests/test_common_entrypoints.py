"""crm_common.entrypoints.rpc: a refused request is an expected answer, not a service error."""
import logging

import pytest
from nameko.exceptions import RemoteError
from nameko.standalone.rpc import ServiceRpcProxy

from crm_common_test_helpers import wait_for
from crm_common.entrypoints import rpc
from crm_common.errors import CrmError, NotFound


class RefusingService:
    name = "refusing"

    @rpc
    def missing(self):
        raise NotFound("no customer c1")

    @rpc(sensitive_arguments=("secret",))
    def broken(self, secret):
        raise RuntimeError("bug")


def test_refused_request_logs_a_warning_and_a_bug_logs_an_error(
        container_factory, rabbit_config, caplog):
    container_factory(RefusingService, rabbit_config).start()
    with caplog.at_level(logging.WARNING, logger="nameko.containers"):
        with ServiceRpcProxy("refusing", rabbit_config, timeout=10) as service:
            with pytest.raises(NotFound) as refused:
                service.missing()
            assert refused.value.detail == "no customer c1"
            with pytest.raises(RemoteError):
                service.broken("s3cret")

        def records(method):
            return [r for r in caplog.records
                    if r.name == "nameko.containers" and f"refusing.{method}" in r.getMessage()]

        wait_for(lambda: records("broken"), message="error logged")
    assert [r.levelname for r in records("missing")] == ["WARNING"]
    assert "(expected)" in records("missing")[0].getMessage()
    assert [r.levelname for r in records("broken")] == ["ERROR"]


def test_rpc_decorator_keeps_explicit_options():
    (entrypoint,) = RefusingService.broken.nameko_entrypoints
    assert entrypoint.sensitive_arguments == ("secret",)
    assert entrypoint.expected_exceptions is CrmError
    (plain,) = RefusingService.missing.nameko_entrypoints
    assert plain.expected_exceptions is CrmError
