"""Phone recordings to the recogniser's PCM with the real ffmpeg: every format, and every way to fail."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lianhu.audio import CorruptAudio, DecodeTimeout, TooLong, decode

CLIPS = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
FORMATS = ("wav", "amr", "ogg", "webm", "m4a", "mp3")
RATE = 16_000


def clip(extension: str) -> bytes:
    return (CLIPS / f"ko-words.{extension}").read_bytes()


@pytest.mark.parametrize("extension", FORMATS)
def test_every_phone_format_decodes_whole(extension):
    pcm = decode(clip(extension), RATE, max_seconds=120, timeout=30)
    reference = decode(clip("wav"), RATE, max_seconds=120, timeout=30)
    assert pcm.rate == RATE and len(pcm.samples) % 2 == 0
    assert pcm.seconds == pytest.approx(reference.seconds, abs=0.1)
    assert 4 < reference.seconds < 5


def test_a_long_m4a_with_its_index_at_the_end_decodes(tmp_path):
    # As phones record: the moov atom after the audio, too far for ffmpeg to reach through a pipe.
    m4a = tmp_path / "long.m4a"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-stream_loop", "24", "-i", str(CLIPS / "ko-words.wav"),
         "-c:a", "aac", "-b:a", "96k", str(m4a)],
        check=True, timeout=120,
    )  # fmt: skip
    data = m4a.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat")
    piped = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", "pipe:0", "-f", "s16le", "pipe:1"],
        input=data, capture_output=True, timeout=60,
    )  # fmt: skip
    assert not piped.stdout  # no audio came through the pipe
    assert decode(data, RATE, max_seconds=120, timeout=30).seconds == pytest.approx(25 * 4.08, abs=1)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is text and not a recording",
        b"\x89PNG\r\n\x1a\n" + bytes(200),
        b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40),
        bytes(range(256)) * 8,
    ],
    ids=["empty", "text", "png", "broken-wav", "noise-bytes"],
)
def test_what_is_not_a_recording_is_corrupt(data):
    with pytest.raises(CorruptAudio) as caught:
        decode(data, RATE, max_seconds=120, timeout=30)
    assert str(caught.value) and "/tmp" not in str(caught.value) and "lianhu-speech-" not in str(caught.value)


def test_a_playlist_cannot_make_ffmpeg_open_other_files():
    playlist = (
        f"#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:4.0,\nfile://{CLIPS / 'ko-words.wav'}\n#EXT-X-ENDLIST\n"
    )
    with pytest.raises(CorruptAudio):
        decode(playlist.encode(), RATE, max_seconds=120, timeout=30)


def test_a_clip_over_the_limit_is_too_long():
    with pytest.raises(TooLong):
        decode(clip("ogg"), RATE, max_seconds=1.0, timeout=30)
    assert decode(clip("ogg"), RATE, max_seconds=5.0, timeout=30).seconds <= 5.0


def test_a_decode_past_its_deadline_is_a_timeout():
    # No ffmpeg starts, let alone finishes, within a microsecond.
    with pytest.raises(DecodeTimeout):
        decode(clip("m4a"), RATE, max_seconds=120, timeout=1e-6)
