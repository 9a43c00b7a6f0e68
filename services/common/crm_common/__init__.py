"""The shared kernel of the CRM services.

Only mechanisms live here (configuration, database sessions, the outbox,
event envelopes, request context, errors, metrics); business rules belong to
the service that owns them.
"""
