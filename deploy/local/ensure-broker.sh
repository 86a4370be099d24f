#!/usr/bin/env bash
# Make sure RabbitMQ answers at LIANHU_AMQP_URI; start a local one if it is installed but down.
set -euo pipefail
lianhu wait-broker --seconds 2 2>/dev/null && exit 0
if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "RabbitMQ is not answering; starting the local rabbitmq-server" >&2
    rabbitmq-server -detached
    lianhu wait-broker --seconds 60 && exit 0
fi
cat >&2 <<MSG
RabbitMQ does not answer at ${LIANHU_AMQP_URI:-amqp://guest:guest@127.0.0.1:5672/}.
Install it (Debian/Ubuntu: apt-get install rabbitmq-server) or point LIANHU_AMQP_URI at a running
broker (e.g. docker run -d -p 5672:5672 rabbitmq:3.13).
MSG
exit 1
