#!/usr/bin/env bash
# The suite runs against real PostgreSQL, Redis and RabbitMQ on 127.0.0.1 (the worker and
# fault suites run on both brokers). Start whichever is down, or fail saying so: real-service
# tests must never be skipped silently.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }
# An AMQP 0-9-1 listener answers the protocol header with connection.start (frame type 1).
rabbitmq_up() {
  timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672 && printf "AMQP\x00\x00\x09\x01" >&3 &&
    head -c 1 <&3 | od -An -tx1 | grep -q 01' 2>/dev/null
}

wait_for() {  # name, check function[, seconds]
  for _ in $(seq 1 "${3:-30}"); do "$2" && return 0; sleep 1; done
  echo "ERROR: $1 did not come up on 127.0.0.1" >&2; return 1
}

if ! pg_up; then
  echo "PostgreSQL is down on 127.0.0.1:5432; starting it..."
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  wait_for PostgreSQL pg_up || { echo "Start PostgreSQL (trust auth, database 'test') and retry." >&2; exit 1; }
fi

if ! redis_up; then
  echo "Redis is down on 127.0.0.1:6379; starting it..."
  if command -v redis-server >/dev/null; then
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  fi
  wait_for Redis redis_up || { echo "Start Redis on 127.0.0.1:6379 and retry." >&2; exit 1; }
fi
if ! rabbitmq_up; then
  echo "RabbitMQ is down on 127.0.0.1:5672; starting it..."
  if command -v rabbitmq-server >/dev/null; then
    rabbitmq-server -detached || true
  fi
  wait_for RabbitMQ rabbitmq_up 90 || {
    echo "Start RabbitMQ on 127.0.0.1:5672 (user guest/guest, vhost /) and retry." >&2; exit 1; }
fi
echo "Services: PostgreSQL, Redis and RabbitMQ answer on 127.0.0.1."
