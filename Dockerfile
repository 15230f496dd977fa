# Whistle application image: the API by default; the worker and `whistle init`
# use the same image with another command (see docker-compose.yml).
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 whistle \
 && useradd --system --uid 10001 --gid whistle --create-home --shell /usr/sbin/nologin whistle

WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The project itself (no dev extras). Editable, so the code runs from /app exactly
# as laid out in the repository; it also provides the `whistle` console script.
COPY . .
RUN pip install --no-deps -e .

# Code stays root-owned and read-only for the service user.
USER 10001:10001
# 8000: the API (and its /metrics); 9464: the worker's /metrics (WHISTLE_WORKER_METRICS_PORT)
EXPOSE 8000 9464
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
