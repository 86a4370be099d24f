# One image for every Lianhu service; docker-compose.yml picks the process with `command:`.
# The speech service's image is the same plus Vosk's Mandarin model: target `speech`
#   docker build --target speech -t lianhu-speech:local .
# Another model: --build-arg VOSK_ZH_MODEL=<name> --build-arg VOSK_ZH_MODEL_SHA256=<sha256 of its zip>
# (and VOSK_ZH_MODEL_URL when it is not on alphacephei.com). docker-compose.yml mounts the `models`
# volume at /models: it starts with this model, and an operator drops larger or Tibetan models
# beside it and names them in LIANHU_SPEECH_MODELS.
FROM python:3.11-slim AS app

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
# 8000: the gateway; 9100: a nameko service's /metrics (LIANHU_METRICS_PORT in compose and Kubernetes).
EXPOSE 8000 9100

CMD ["uvicorn", "services.intake.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]

# The model, fetched once at build time and checked against its pinned checksum.
FROM python:3.11-slim AS model
ARG VOSK_ZH_MODEL=vosk-model-small-cn-0.22
ARG VOSK_ZH_MODEL_URL=https://alphacephei.com/vosk/models/${VOSK_ZH_MODEL}.zip
# 43,898,754 bytes; the same digest is published by the model's Hugging Face mirror (rhasspy/vosk-models).
ARG VOSK_ZH_MODEL_SHA256=3af8b0e7e0f835ae9d414ce5df580237a3cfb08d586c9fbbb0f7ff29ad5b14ba
WORKDIR /fetch
RUN python -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], 'model.zip')" \
       "$VOSK_ZH_MODEL_URL" \
    && echo "$VOSK_ZH_MODEL_SHA256  model.zip" | sha256sum -c - \
    && python -m zipfile -e model.zip /models \
    && test -f "/models/$VOSK_ZH_MODEL/conf/model.conf" \
    && rm model.zip

# The speech service: the platform's image and the model.
FROM app AS speech
ARG VOSK_ZH_MODEL=vosk-model-small-cn-0.22
COPY --from=model --chown=lianhu:lianhu /models /models

# Two workers: a decode holds a core for seconds, and nameko's prefetch is its worker count.
# MALLOC_ARENA_MAX: decodes run on a pool of native threads; with an arena per thread, freed
# recogniser memory is not reused across them and each worker costs twice the memory.
ENV LIANHU_SPEECH_MODELS=zh=/models/${VOSK_ZH_MODEL} \
    LIANHU_MAX_WORKERS=2 \
    MALLOC_ARENA_MAX=2

CMD ["nameko", "run", "--config", "deploy/nameko.yaml", "services.speech.service"]

# Built without --target: the platform's image.
FROM app
