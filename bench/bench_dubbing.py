"""Translation dubbing on real clips: what each stage costs, and where each spoken segment lands.

    python bench/bench_dubbing.py [--checkpoints DIR] [--to es] [--media ../shared/media] [--device cpu]

Voice models: <checkpoints>/xtts-v2, asr/ and translation/ when they are all there (real weights), else tiny random
ones written to a scratch folder (``testing.tiny_voice``, ``testing.tiny_translation``): then the segments are the
clip's real phrases (its voiced regions) carrying the tiny translator's gibberish, and the speech is noise-like, so
only the mechanics are measured (times, placement, bounds), not the quality of a translation. The run says which
it used.

For each real talking-head clip (demo1/demo2_video.mp4, 1080x1920 HEVC with speech) it prints: the wall time of
transcription + translation and of speaking + placing (cold: models loading included, then warm), then per segment
the source start, where its speech was heard to begin in the dubbed track (first 10 ms frame above -40 dBFS of the
track's peak), their difference, the stretch rate, and any overrun; then the worst onset error, the rate range,
and a second dub with one segment's text changed: how many segments were spoken again, and how many samples outside
that segment's span changed. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from latentsync_demo.voice import VoiceService, speaker_reference
from latentsync_demo.voice.dubbing import STRETCH_RANGE

ROOT = Path(__file__).resolve().parents[1]


def onset(track: np.ndarray, sample_rate: int, start_s: float, after_s: float = 0.0,
          window_s: float = 0.3) -> float | None:
    """Seconds where the track first gets loud (-40 dB of its peak) from ``start_s - window_s`` on (but not before
    ``after_s``: where the previous segment's speech ended)."""
    hop = int(0.010 * sample_rate)
    i0 = max(0, int(max(start_s - window_s, after_s) * sample_rate))
    piece = track[i0: i0 + int(2 * window_s * sample_rate)]
    n = piece.size // hop
    if n == 0:
        return None
    rms = np.sqrt(np.mean(piece[: n * hop].reshape(n, hop) ** 2, axis=1))
    loud = np.nonzero(rms > np.abs(track).max() * 10 ** (-40 / 20))[0]
    return (i0 + loud[0] * hop) / sample_rate if loud.size else None


def voice_service(checkpoints: str | None, device: str) -> tuple[VoiceService, str]:
    if checkpoints:
        service = VoiceService(checkpoints, device)
        if not service.missing_files("translate"):
            return service, f"real weights in {checkpoints}"
    from latentsync_demo.testing.tiny_translation import write_tiny_translation_model
    from latentsync_demo.testing.tiny_voice import write_tiny_voice_models

    root = Path(tempfile.mkdtemp(prefix="bench_dub_"))
    write_tiny_voice_models(root)
    write_tiny_translation_model(root)
    return VoiceService(root, device), "TINY RANDOM voice and translation models (mechanics only)"


def phrase_script(script, clip: Path):
    """Tiny models only: one segment per phrase of the clip's real speech (its voiced regions), with the tiny
    translator's text cycled over them, so placement meets a real clip's phrase timing (the tiny recogniser
    puts out one segment, or random times)."""
    from dataclasses import replace

    from latentsync_demo.media import load_audio
    from latentsync_demo.voice.dubbing import DubSegment
    from latentsync_demo.voice.reference import voiced_regions

    regions = voiced_regions(load_audio(clip, 16000), 16000, gap_s=0.3)
    texts = [s.text for s in script.segments]
    segments = tuple(DubSegment(a / 16000, b / 16000, "", " ".join(texts[i % len(texts)].split()[: 3 + i % 4]))
                     for i, (a, b) in enumerate(regions))
    return replace(script, segments=segments)


def bench_clip(service: VoiceService, clip: Path, target: str, tiny: bool) -> None:
    from latentsync_demo.media import probe

    t0 = time.perf_counter()
    script = service.transcribe_translate(clip, target)
    t1 = time.perf_counter()
    if tiny:
        script = phrase_script(script, clip)
    reference = speaker_reference(clip)
    duration = probe(clip).duration
    track, sr, placements = service.dub(script, reference, duration, seed=0)
    t2 = time.perf_counter()
    print(f"\n{clip.name}: {duration:.2f} s, {len(script.segments)} segments, {script.source_language} -> "
          f"{script.target_language}; transcribe+translate {t1 - t0:.2f} s, speak+place {t2 - t1:.2f} s (cold)")
    errors = []
    previous_end = 0.0
    for seg, p in zip(script.segments, placements):
        if previous_end > seg.start:  # the previous segment overran into this one: its onset is masked
            heard_text = f"masked by segment {p.index}'s overrun"
        else:
            heard = onset(track, sr, seg.start, previous_end)
            errors.append(abs(heard - seg.start) * 1000 if heard is not None else float("nan"))
            heard_text = f"heard from {heard:6.2f} s ({(heard - seg.start) * 1000:+6.1f} ms)" if heard is not None \
                else "not heard"
        previous_end = p.end
        print(f"  segment {p.index + 1}: source {seg.start:6.2f}-{seg.end:6.2f} s  {heard_text}  rate {p.rate:.3f}x  "
              f"overrun {p.overrun:.2f} s")
    rates = [p.rate for p in placements]
    print(f"  worst onset error {np.nanmax(errors):.1f} ms over {len(errors)} unmasked segments (bound 40 ms); rates {min(rates):.3f}-{max(rates):.3f}x "
          f"(bounds {STRETCH_RANGE[0]}-{STRETCH_RANGE[1]}x)")
    edited_index = len(script.segments) // 2
    texts = [s.text for s in script.segments]
    texts[edited_index] = texts[edited_index] + " " + texts[edited_index].split()[0]
    spoken = []
    cloner = service.cloner()
    original = cloner.synthesize
    cloner.synthesize = lambda text, *a, **k: spoken.append(text) or original(text, *a, **k)
    try:
        t3 = time.perf_counter()
        again, _, placed_again = service.dub(script.with_texts(texts), reference, duration, seed=0)
        t4 = time.perf_counter()
    finally:
        cloner.synthesize = original
    span = (min(placements[edited_index].start, placed_again[edited_index].start),
            max(placements[edited_index].end, placed_again[edited_index].end))
    n = min(track.size, again.size)
    changed = np.nonzero(track[:n] != again[:n])[0] / sr
    outside = int(np.sum((changed < span[0]) | (changed >= span[1])))
    print(f"  edit segment {edited_index + 1}: {len(spoken)} segment(s) spoken again, re-dub {t4 - t3:.2f} s "
          f"(warm); samples changed outside its span: {outside}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", default=None)
    parser.add_argument("--to", default="es")
    parser.add_argument("--media", default=str(ROOT.parent / "shared" / "media"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    service, which = voice_service(args.checkpoints, args.device)
    tiny = which.startswith("TINY")
    print(f"voice models: {which}; device {args.device}" + ("; segments: the clips' voiced phrases" if tiny else ""))
    for name in ("demo1_video.mp4", "demo2_video.mp4"):
        clip = Path(args.media) / name
        if clip.is_file():
            bench_clip(service, clip, args.to, tiny)
        else:
            print(f"{clip} not found (--media)")


if __name__ == "__main__":
    main()
