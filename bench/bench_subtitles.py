"""Subtitles and the room sound on a real 1080x1920 clip: what soft and burned subtitles cost a job, whether the
watermark is still found, and how far the ducked room drops under speech.

    python bench/bench_subtitles.py [--video /work/shared/media/demo1_video.mp4] [--audio ...demo1_audio.wav]
                                    [--seconds 4] [--device cpu]

Runs the same job (tiny random models, 1 step, the first ``--seconds`` of the clip) three times: without
subtitles, with a soft track, with the subtitles burned in (one cue per second of made-up Spanish text), and
prints each job's wall time, the output's size, whether the watermark scan (``latentsync verify``'s) finds the job's mark, and for the
burned output its mean per-pixel difference from the soft one in the bottom fifth (where libass draws), with and
without a cue on screen, and above it (each job marks its own job number, so a few levels differ everywhere). Then it ducks the clip's own sound under the speech track (``media.mix.duck_under``, 12 dB) and prints the
room's level change in the seconds with speech and in those without. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from latentsync_demo.media import load_audio, read_frames, run_ffmpeg
from latentsync_demo.media.mix import duck_under
from latentsync_demo.media.subtitles import Cue, write_srt
from latentsync_demo.service import LipSyncService
from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints
from latentsync_demo.provenance.detect import scan
from latentsync_demo.provenance.watermark import key_from_env
from latentsync_demo.voice.reference import voiced_regions

WORDS = ["hola", "amigos", "esta", "es", "una", "prueba", "de", "subtítulos", "mañana", "según", "el", "plan"]


def run_job(service, video, audio, out, **subtitles) -> float:
    began = time.perf_counter()
    list(service.lipsync(video, audio, out, num_inference_steps=1, consent=True, **subtitles))
    return time.perf_counter() - began


def room_levels(video: Path, speech: Path) -> None:
    """The room's dB change where the speech is active and where it is not (10 ms frames)."""
    rate = 16000
    room, voice = load_audio(video, rate), load_audio(speech, rate)
    n = min(room.size, voice.size)
    room, voice = room[:n], voice[:n]
    ducked = duck_under(room, voice, rate) - voice  # the room as it is heard under the speech
    active = np.zeros(n, bool)
    for a, b in voiced_regions(voice, rate):
        active[a:b] = True
    for name, mask in (("during speech", active), ("away from speech", ~active)):
        if mask.sum() == 0:
            continue
        before, after = np.sqrt(np.mean(room[mask] ** 2)), np.sqrt(np.mean(ducked[mask] ** 2))
        print(f"  room {name}: {20 * np.log10(after / before):+.1f} dB ({mask.sum() / rate:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", default="/work/shared/media/demo1_video.mp4")
    parser.add_argument("--audio", default="/work/shared/media/demo1_audio.wav")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_subs_") as tmp:
        tmp = Path(tmp)
        video, audio = tmp / "clip.mp4", tmp / "speech.wav"
        run_ffmpeg(["-y", "-i", args.video, "-t", f"{args.seconds}", "-c", "copy", str(video)])
        run_ffmpeg(["-y", "-i", args.audio, "-t", f"{args.seconds}", str(audio)])
        cues = [Cue(i + 0.1, i + 0.9, " ".join(WORDS[(3 * i) % len(WORDS):][:4])) for i in range(int(args.seconds))]
        srt = write_srt(cues, tmp / "es.srt")
        service = LipSyncService(write_tiny_checkpoints(tmp / "ckpt"), device=args.device)
        run_job(service, video, audio, tmp / "warm.mp4")  # models loaded, caches warm
        outputs = {}
        for name, extra in (("none", {}), ("soft", {"subtitles": srt, "subtitle_language": "es"}),
                            ("burned", {"subtitles": srt, "subtitle_language": "es", "burn_subtitles": True})):
            out = tmp / f"{name}.mp4"
            seconds = run_job(service, video, audio, out, **extra)
            found = scan(out, key_from_env(), 250)
            outputs[name] = out
            print(f"subtitles {name:<6}: job {seconds:5.1f} s, {out.stat().st_size / 1e6:.2f} MB, watermark "
                  f"{'found' if found.found else 'NOT found'} (score {found.score:.1f}, job {found.job_hex})")
        soft, burned = read_frames(outputs["soft"], fps=None), read_frames(outputs["burned"], fps=None)
        cut = int(soft[0].shape[0] * 0.8)
        cue_frames = [i for i in range(len(soft)) if any(c.start <= i / 25 < c.end for c in cues)]
        plain_frames = [i for i in range(len(soft)) if i not in cue_frames]

        def mean_diff(frames, rows):  # the jobs' watermarks differ (another job number): a few levels everywhere
            return np.mean([np.abs(soft[i][rows].astype(int) - burned[i][rows]).mean() for i in frames])

        print(f"burned vs soft, mean |difference| per pixel: bottom fifth {mean_diff(cue_frames, slice(cut, None)):.2f} "
              f"in the {len(cue_frames)} frames with a cue, {mean_diff(plain_frames, slice(cut, None)):.2f} in the "
              f"{len(plain_frames)} without; above it {mean_diff(cue_frames, slice(0, cut)):.2f} (the marks and "
              "the re-encode only)")
        print("ducking the clip's own sound under the speech (12 dB):")
        room_levels(video, audio)


if __name__ == "__main__":
    main()
