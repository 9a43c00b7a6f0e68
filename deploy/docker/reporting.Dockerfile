# syntax=docker/dockerfile:1
# The reporting service (nameko ReportingService, HTTP on 8104) on the shared base
# image (base.Dockerfile: dependencies, crm_common, user 10001). From the
# repository root, once the base is built:
#   docker build -f deploy/docker/reporting.Dockerfile -t crm/reporting:0.1.0 .
# deploy/compose.yaml builds the base first and hands it in as BASE_IMAGE.
ARG BASE_IMAGE=crm/base:0.1.0
FROM ${BASE_IMAGE}

ENV CRM_SERVICE=reporting
COPY services/reporting services/reporting
RUN pip install --no-deps --no-build-isolation services/reporting

USER 10001:10001
EXPOSE 8104
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["crm-service", "health"]
ENTRYPOINT ["crm-service"]
CMD ["run"]
