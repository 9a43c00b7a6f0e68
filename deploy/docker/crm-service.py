#!/usr/bin/env python
"""Entrypoint of the CRM image: `run` starts the service named by CRM_SERVICE,
`health` checks its /health (the image's HEALTHCHECK), `migrate` brings its
database to the latest schema. The port is the one the service's config.yaml
reads, so overriding CRM_<SERVICE>_HTTP_PORT (or CRM_GATEWAY_PORT) moves both.
"""
import os
import sys
import urllib.request

CLASSES = {"customers": "CustomersService", "sales": "SalesService",
           "notifications": "NotificationsService", "reporting": "ReportingService",
           "gateway": "GatewayService"}
PORTS = {"gateway": ("CRM_GATEWAY_PORT", 8000), "customers": ("CRM_CUSTOMERS_HTTP_PORT", 8101),
         "sales": ("CRM_SALES_HTTP_PORT", 8102), "notifications": ("CRM_NOTIFICATIONS_HTTP_PORT", 8103),
         "reporting": ("CRM_REPORTING_HTTP_PORT", 8104)}


def main(argv):
    service = os.environ["CRM_SERVICE"]
    command = argv[0] if argv else "run"
    if command == "run":
        config = f"/app/services/{service}/config.yaml"
        os.execvp("nameko", ["nameko", "run", "--config", config, f"{service}.service:{CLASSES[service]}"])
    if command == "migrate":
        os.execvp("python", ["python", "-m", "crm_common.migrate", service])
    if command == "health":
        var, default = PORTS[service]
        url = f"http://127.0.0.1:{os.environ.get(var) or default}/health"
        try:
            with urllib.request.urlopen(url, timeout=4) as response:
                return 0 if response.status == 200 else 1
        except OSError as error:
            print(f"{url}: {error}", file=sys.stderr)
            return 1
    print(f"usage: crm-service [run|health|migrate] (not {command!r})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
