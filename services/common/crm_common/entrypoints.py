"""nameko entrypoints with our defaults.

``rpc`` declares CrmError an expected exception: a refused request (not
found, invalid, conflict) is an answer to the caller, logged by nameko as a
warning rather than as a service error.
"""
from nameko.rpc import rpc as nameko_rpc

from crm_common.errors import CrmError


def rpc(fn=None, **kwargs):
    kwargs.setdefault("expected_exceptions", CrmError)
    if fn is None:
        return nameko_rpc(**kwargs)
    return nameko_rpc(**kwargs)(fn)
