# One image for every Lianhu service; docker-compose.yml picks the process with `command:`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg decodes phone audio (AMR, M4A, Opus) for the speech service; nothing else from apt.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 lianhu \
    && useradd --system --uid 10001 --gid lianhu --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin lianhu

WORKDIR /app

# Dependencies first, from the exact pins in pyproject.toml, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
       > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY lianhu ./lianhu
COPY services ./services
RUN pip install --no-deps . \
    && rm -rf build ./*.egg-info

COPY deploy ./deploy

# var/ holds each service's SQLite file, audio and the generated secret key when no database URL or
# LIANHU_SECRET_KEY is given. A named volume mounted here starts with this directory's ownership.
ENV LIANHU_VAR_DIR=/app/var
RUN mkdir -p /app/var && chown lianhu:lianhu /app/var
VOLUME ["/app/var"]

USER lianhu
EXPOSE 8000

CMD ["uvicorn", "services.intake.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
