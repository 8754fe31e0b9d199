# Patron's API server: `docker build -t patron .` then see compose.yaml and docs/operations.md.
# Two stages: the build stage installs Patron into a virtualenv; the runtime stage copies only
# that virtualenv onto a slim Python and runs it as an unprivileged user.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Every dependency ships binary wheels for Linux (psycopg[binary] included): no compiler.
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/patron \
 && /opt/patron/bin/pip install --upgrade pip \
 && /opt/patron/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/patron/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATRON_HOST=0.0.0.0 \
    PATRON_PORT=8000 \
    PATRON_LOG_FORMAT=json
RUN groupadd --system --gid 10001 patron \
 && useradd --system --uid 10001 --gid patron --home-dir /var/lib/patron --create-home patron
COPY --from=build /opt/patron /opt/patron
USER patron
# Without PATRON_DATABASE_URL Patron uses SQLite here (patron.db); mount a volume to keep it.
WORKDIR /var/lib/patron
EXPOSE 8000
# Liveness only (/health touches no database); a load balancer should route on /ready.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PATRON_PORT', '8000'), timeout=2)"]
CMD ["patron", "serve", "--host", "0.0.0.0", "--port", "8000"]
