#!/usr/bin/env bash
# Runs the whole test suite. PostgreSQL runs too when PATRON_TEST_DATABASE_URL is set,
# or when a local server answers on 127.0.0.1:5432 (then that one is used).
set -uo pipefail
BIN=${BIN:-.venv/bin}

if [ -z "${PATRON_TEST_DATABASE_URL:-}" ] && command -v pg_isready >/dev/null \
   && pg_isready -q -h 127.0.0.1 -p 5432; then
  export PATRON_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres
fi
if [ -n "${PATRON_TEST_DATABASE_URL:-}" ]; then
  echo "tests on SQLite and PostgreSQL (${PATRON_TEST_DATABASE_URL##*@})"
else
  echo "tests on SQLite only (no PostgreSQL: set PATRON_TEST_DATABASE_URL to include it)"
fi

"$BIN/pytest" -n "${PYTEST_WORKERS:-2}" --durations=25 "$@"
status=$?
if [ "$status" -eq 5 ]; then
  # pytest's "no tests collected": never a pass, since the suite is not empty.
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
