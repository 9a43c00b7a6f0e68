# syntax=docker/dockerfile:1
# The customers service (nameko CustomersService, HTTP on 8101) on the shared base
# image (base.Dockerfile: dependencies, crm_common, user 10001). From the
# repository root, once the base is built:
#   docker build -f deploy/docker/customers.Dockerfile -t crm/customers:0.1.0 .
# deploy/compose.yaml builds the base first and hands it in as BASE_IMAGE.
ARG BASE_IMAGE=crm/base:0.1.0
FROM ${BASE_IMAGE}

ENV CRM_SERVICE=customers
COPY services/customers services/customers
RUN pip install --no-deps --no-build-isolation services/customers

USER 10001:10001
EXPOSE 8101
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["crm-service", "health"]
ENTRYPOINT ["crm-service"]
CMD ["run"]
