#!/usr/bin/env bash
# Make sure RabbitMQ answers on 127.0.0.1: AMQP on 5672 for the services, and
# the management API on 15672, through which nameko's test fixtures create a
# vhost per test. A server that already answers is used as it is (some
# machines run one before we get there); only a machine without one gets
# RabbitMQ installed from Debian and started here.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

# rabbitmqctl and friends live in /usr/sbin, which a non-root PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
WAIT=${CRM_SERVICE_WAIT_SECONDS:-120}
MGMT_URL=http://127.0.0.1:15672/api/overview
PLUGINS=(rabbitmq_management rabbitmq_prometheus)

amqp_answers() { timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' 2>/dev/null; }
mgmt_answers() { curl -fsS -o /dev/null --max-time 3 -u guest:guest "$MGMT_URL" 2>/dev/null; }
# Is the Erlang node up, whether or not the RabbitMQ application runs in it?
node_answers() { as_root timeout 20 rabbitmqctl -q ping >/dev/null 2>&1; }
# await_startup blocks until the app has booted, but fails at once while the
# node itself is not up yet: poll it, each try bounded.
app_started() { as_root timeout 30 rabbitmqctl -q await_startup >/dev/null 2>&1; }

enable_plugins_and_wait() {
    log "RabbitMQ: enabling ${PLUGINS[*]}"
    as_root rabbitmq-plugins -q enable "${PLUGINS[@]}" >/dev/null
    wait_until "$WAIT" "the RabbitMQ management API on $MGMT_URL" mgmt_answers \
        || die "RabbitMQ management API did not come up; see /var/log/rabbitmq/"
}

# Every later check and `make up` itself use curl.
command -v curl >/dev/null || apt_install curl

if amqp_answers; then
    if mgmt_answers; then
        log "RabbitMQ: already running, management API answers"
        exit 0
    fi
    # A broker answers, but not its management API: if it is ours to manage,
    # turn the plugins on rather than starting a second broker.
    command -v rabbitmqctl >/dev/null \
        || die "something answers on 127.0.0.1:5672 but not its management API on 15672, and there is no local rabbitmqctl: enable ${PLUGINS[*]} on that broker"
    enable_plugins_and_wait
    exit 0
fi

command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server

# The Debian package may have started the server itself (where there is an
# init system), and a node can also be up with its app stopped
# (`rabbitmqctl stop_app`); starting a second node would fail in both cases.
if node_answers; then
    log "RabbitMQ: node is up, starting its application"
    as_root rabbitmqctl -q start_app || true
else
    log "RabbitMQ: starting the server"
    as_root rabbitmq-server -detached
fi
wait_until "$WAIT" "RabbitMQ to boot" app_started \
    || die "RabbitMQ did not start; see /var/log/rabbitmq/"
enable_plugins_and_wait
amqp_answers || die "RabbitMQ started but nothing answers on 127.0.0.1:5672 (check listeners in /etc/rabbitmq/)"
log "RabbitMQ: running"
