# syntax=docker/dockerfile:1
# The prediction service: the pipeline's verified final model behind `sentiment-pipeline serve`.
# Build after `dvc repro` (or `dvc pull`), from the project root:
#   docker build -t sentiment-api .
#   docker run -p 8000:8000 -v "$PWD/logs/keys:/app/project/logs/keys:ro" sentiment-api
# The image holds no API key: it listens on 0.0.0.0, so `serve` refuses to start until the key
# store (serve.keys_file, default logs/keys/api_keys.json, from `sentiment-pipeline keys create`)
# is mounted, as a directory so that revocations show (compose.yaml; Kubernetes: a Secret, see
# deploy/kubernetes.yaml), or SENTIMENT_SERVE_AUTH=none is set (only on a trusted network). The
# image's user (uid 10001) must be able to read it.
# The image holds models/final, dvc.lock (the model's hash is checked against it at start-up),
# params.yaml and the evaluation files the dashboard shows; to serve another model, mount a
# project directory over /app/project instead of rebuilding.

# ---- build: the locked dependencies and the package into /opt/venv
FROM python:3.11-slim AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/venv PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
# dependencies first: this layer is reused until uv.lock changes
RUN uv sync --locked --no-dev --no-install-project
COPY src ./src
RUN uv sync --locked --no-dev --no-editable

# ---- runtime: the environment, the model and what describes it; no compilers, no sources
FROM python:3.11-slim AS runtime
RUN useradd --system --uid 10001 --create-home --home-dir /home/app app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app/project
COPY --chown=app:app params.yaml dvc.lock ./
COPY --chown=app:app models/final ./models/final
COPY --chown=app:app metrics ./metrics
COPY --chown=app:app plots ./plots
RUN mkdir -p logs && chown app:app logs
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SENTIMENT_SERVE_HOST=0.0.0.0 \
    SENTIMENT_SERVE_PORT=8000 \
    SENTIMENT_SERVE_WORKERS=2 \
    SENTIMENT_SERVE_DATABASE_URL=sqlite:////app/project/logs/predictions.db
USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['SENTIMENT_SERVE_PORT']}/healthz\", timeout=2).status == 200 else 1)"]
# exec form: uvicorn gets SIGTERM from `docker stop` and drains the prediction log before exiting
CMD ["sentiment-pipeline", "serve", "--project", "/app/project"]
