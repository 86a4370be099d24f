"""Any phone's recording to raw PCM with the ``ffmpeg`` CLI: one decoder for every format.

The gateway decodes at a low rate to learn a clip's real length (a WebM from a browser carries no
duration in its header) and to refuse what no one could play; the speech service decodes at the
engine's rate. ffmpeg runs as a child process with a deadline, so a crafted file can cost at most
that much time and never the caller's memory: the output is cut at the length limit.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

SAMPLE_BYTES = 2  # s16le, mono


class AudioError(Exception):
    """Why a recording cannot be used; ``reason`` is one of the transcription failure reasons."""

    reason = "corrupt_audio"


class CorruptAudio(AudioError):
    reason = "corrupt_audio"


class TooLong(AudioError):
    reason = "too_long"


class DecodeTimeout(AudioError):
    reason = "timeout"


@dataclass(frozen=True)
class Pcm:
    samples: bytes  # signed 16-bit little-endian, mono
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / (SAMPLE_BYTES * self.rate)


def decode(data: bytes, rate: int = 16_000, max_seconds: float = 120.0, timeout: float = 30.0) -> Pcm:
    """The whole clip as mono s16le at ``rate``; CorruptAudio, TooLong or DecodeTimeout otherwise."""
    if not data:
        raise CorruptAudio("the recording is empty")
    command = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
        "-i", "pipe:0",
        # One sample past the limit is enough to know the clip is too long.
        "-t", f"{max_seconds + 1 / rate:.6f}",
        "-vn", "-ac", "1", "-ar", str(rate), "-f", "s16le", "pipe:1",
    ]  # fmt: skip
    try:
        result = subprocess.run(command, input=data, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DecodeTimeout(f"decoding took longer than {timeout:.0f} s") from None
    except FileNotFoundError:
        raise RuntimeError("ffmpeg is not installed (Debian package ffmpeg)") from None
    if result.returncode != 0 or not result.stdout:
        reason = result.stderr.decode(errors="replace").strip().splitlines()
        raise CorruptAudio(reason[-1] if reason else "no audio could be decoded")
    pcm = Pcm(result.stdout, rate)
    if pcm.seconds > max_seconds:
        raise TooLong(f"the recording is longer than {max_seconds:.0f} s")
    return pcm
