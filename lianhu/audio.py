"""Any phone's recording to raw PCM with the ``ffmpeg`` CLI: one decoder for every format.

The gateway decodes at a low rate to learn a clip's real length (a WebM from a browser carries no
duration in its header) and to refuse what no one could play; the speech service decodes at the
engine's rate. ffmpeg runs as a child process with a deadline and its output cut at the length
limit, so a crafted file costs at most that much time. It reads and writes files, never pipes:

- an M4A whose index (``moov``) follows its audio, as phones write them, cannot be read from a pipe
  once it outgrows ffmpeg's probe buffer (about 1 MB, a minute and a half at 64 kbit/s);
- under eventlet (nameko), a deadline that strikes inside ``Popen.communicate`` raises a
  ``TimeoutExpired`` of another class than ``subprocess.TimeoutExpired``, which nothing catches;
  with no pipes only ``wait`` can time out, and that one raises the right class.

Only the demuxers of the formats phones send may open the file, so no playlist or other container can
make ffmpeg read anything else.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

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


# WAV, AMR-NB, Ogg/Opus, WebM/Opus (matroska), M4A/AAC (mov), MP3: lianhu.filetypes.AUDIO_TYPES.
DEMUXERS = "wav,amr,ogg,matroska,mov,mp3"


def decode(data: bytes, rate: int = 16_000, max_seconds: float = 120.0, timeout: float = 30.0) -> Pcm:
    """The whole clip as mono s16le at ``rate``; CorruptAudio, TooLong or DecodeTimeout otherwise."""
    if not data:
        raise CorruptAudio("the recording is empty")
    with tempfile.TemporaryDirectory(prefix="lianhu-speech-") as scratch:
        source, target, errors = (Path(scratch) / name for name in ("recording", "pcm", "errors"))
        source.write_bytes(data)
        command = [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
            "-format_whitelist", DEMUXERS, "-i", str(source),
            # One sample past the limit is enough to know the clip is too long.
            "-map", "0:a:0", "-t", f"{max_seconds + 1 / rate:.6f}",
            "-ac", "1", "-ar", str(rate), "-f", "s16le", str(target),
        ]  # fmt: skip
        with errors.open("wb") as stderr:
            try:
                result = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                raise DecodeTimeout(f"decoding took longer than {timeout:g} s") from None
        if result.returncode != 0:
            lines = errors.read_text(errors="replace").replace(str(source), "the recording").splitlines()
            raise CorruptAudio(lines[-1] if lines else f"ffmpeg failed with status {result.returncode}")
        pcm = Pcm(target.read_bytes(), rate)
    if not pcm.samples:
        raise CorruptAudio("the recording holds no audio")
    if pcm.seconds > max_seconds:
        raise TooLong(f"the recording is longer than {max_seconds:g} s")
    return pcm
