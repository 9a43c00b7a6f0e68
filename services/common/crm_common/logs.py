"""One JSON object per log line, carrying the request id of the worker that logged it.

Configured from each service's config.yaml:

    LOGGING:
      version: 1
      formatters: {json: {"()": crm_common.logs.JsonFormatter, service: customers}}
      ...
"""
import json
import logging
from datetime import datetime, timezone

from eventlet.corolocal import local

from crm_common.errors import CrmError

# The request being served by the current green thread (set by the Context dependency).
current = local()


def bind_request_id(request_id):
    current.request_id = request_id


class JsonFormatter(logging.Formatter):
    def __init__(self, service="crm", **kwargs):
        super().__init__()
        self.service = service

    def format(self, record):
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "request_id": getattr(current, "request_id", None),
            "message": record.getMessage(),
        }
        if record.exc_info:
            error = record.exc_info[1]
            if isinstance(error, CrmError):
                # A refused request (404, 422, 503 ...) is an answer, not a
                # bug: one line, no traceback to drown the logs.
                entry["error"] = f"{type(error).__name__}: {error}"
            else:
                entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
