#!/usr/bin/env bash
# The suite runs every database test on PostgreSQL too: make sure the local server answers.
set -euo pipefail
url="${LIANHU_TEST_PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
pg_up() { python -c "import psycopg2, sys; psycopg2.connect(sys.argv[1]).close()" "$url" 2>/dev/null; }
pg_up && exit 0
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "PostgreSQL is not answering; starting the local cluster" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_up && exit 0; sleep 1; done
fi
echo "PostgreSQL does not answer at $url: install it (apt-get install postgresql) or set LIANHU_TEST_PG_ADMIN_URL" >&2
exit 1
