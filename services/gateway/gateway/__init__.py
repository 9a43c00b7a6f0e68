"""The CRM gateway: the HTTP API in front of the services (auth, users, roles, routing, OpenAPI)."""
