#!/usr/bin/env bash
# make serve: the example admin on http://127.0.0.1:8000 with the simulator and a Celery worker.
# Log in as demo / demo. Ctrl-C stops all three processes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
MANAGE="$PY example_project/manage.py"

export CLICKATELL_BASE_URL="${CLICKATELL_BASE_URL:-http://127.0.0.1:8911/http/}"
if redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/1}"
  export CELERY_BROKER_URL="${CELERY_BROKER_URL:-redis://127.0.0.1:6379/2}"
fi

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

$PY -m django_clickatell.simulator --port 8911 & pids+=($!)
$MANAGE migrate --verbosity 0
$MANAGE shell -c "
from django.contrib.auth.models import User
if not User.objects.filter(username='demo').exists():
    User.objects.create_superuser('demo', 'demo@example.com', 'demo')
"
if [ -n "${CELERY_BROKER_URL:-}" ]; then
  (cd example_project && ../.venv/bin/celery -A example_project worker --loglevel=INFO) & pids+=($!)
else
  echo "Redis not reachable: Celery runs eagerly inside the web process."
fi
echo "Admin: http://127.0.0.1:8000/admin/  (demo / demo)"
# DEBUG is off unless DJANGO_DEBUG=1: --insecure lets runserver serve the admin's static files anyway.
$MANAGE runserver --insecure 127.0.0.1:8000
