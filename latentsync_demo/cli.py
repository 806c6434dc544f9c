"""The run command: ``latentsync run --video in.mp4 --audio speech.wav --out out.mp4`` (``run`` may be left out;
``latentsync_demo.commands`` lists the other commands).

``latentsync --list-faces in.mp4`` prints the faces of the clip's first seconds instead, one line each, so a
script can choose the ``--face-index`` of the person to lip-sync. A dialogue gives each face its own speech track
instead of ``--audio``: ``--speech 0=a.wav --speech 1=b.wav``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from .errors import InputError, LatentSyncError
from .face.landmarks import LANDMARK_CHOICES
from .face.listing import LIST_SECONDS
from .pipeline.length import LENGTH_MODES
from .pipeline.samplers import SAMPLERS
from .settings import AUDIO_WINDOW_MODES, SUBTITLE_MODES, VOICE_MODES, GenerationSettings, VoiceRequest
from .provenance.consent import consent_from_env, consent_statement
from .provenance.manifest import sidecar_path
from .store import DEFAULT_PRESET, PRESETS
from .voice.xtts import LANGUAGES


def build_parser() -> argparse.ArgumentParser:
    defaults = GenerationSettings()
    parser = argparse.ArgumentParser(prog="python -m latentsync_demo", description="Lip-sync a video to speech.")
    parser.add_argument("--video", help="talking-head video (mp4, mov, mkv, webm, avi, ...)")
    parser.add_argument("--audio", help="speech (wav, mp3, m4a, flac, ogg) or a video with sound; "
                        "optional with --voice script")
    parser.add_argument("--out", help="output .mp4")
    parser.add_argument("--speech", action="append", metavar="FACE=FILE",
                        help="a dialogue: lip-sync face FACE (its --list-faces index) to speech FILE; repeat for "
                        "each speaker, instead of --audio (the output's sound is the tracks mixed)")
    parser.add_argument("--list-faces", metavar="VIDEO",
                        help="print the faces of VIDEO's first seconds (index, box, frames seen, share) and stop; "
                        "the index is what --face-index takes")
    parser.add_argument("--list-seconds", type=float, default=LIST_SECONDS,
                        help=f"how much of the video's start --list-faces scans (default {LIST_SECONDS:g} s)")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    parser.add_argument("--sampler", default="ddim", choices=sorted(SAMPLERS),
                        help="ddim: quality (official); dpmpp / unipc: 8-step solvers on the official weights; "
                        "lcm: 4-step distilled student (needs <checkpoints>/lcm/)")
    parser.add_argument("--steps", type=int, default=None,
                        help=", ".join(f"{s.name}: default {s.default_steps}, {s.min_steps}-{s.max_steps}"
                                       for s in SAMPLERS.values()))
    parser.add_argument("--guidance", type=float, default=defaults.guidance_scale,
                        help="audio guidance, 1.0-3.0 (ddim; lcm has it distilled in)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--deepcache", action=argparse.BooleanOptionalAction, default=defaults.deepcache,
                        help="reuse deep UNet features on 2 of every 3 steps, as the official app (default: on)")
    parser.add_argument("--audio-windows", choices=AUDIO_WINDOW_MODES, default=defaults.audio_windows,
                        help="Whisper windows for speech over 30 s: seamless (default: overlapping windows, no "
                        "glitch every 30 s) or official (the official features exactly); the same up to 30 s")
    parser.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available)")
    parser.add_argument("--chunk-batch", type=int, default=defaults.chunk_batch,
                        help="16-frame chunks per UNet batch (default 0: from free GPU memory; 1 on CPU)")
    parser.add_argument("--window-frames", type=int, default=defaults.window_frames,
                        help="frames per generated chunk (default 0: 16, or the clip length a hierarchical-attention "
                        "checkpoint was trained on when memory allows)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet (warm-up ~1 min; CUDA)")
    parser.add_argument("--checkpoints", default=None, help="checkpoint folder (default: ./checkpoints)")
    parser.add_argument("--face-index", type=int, default=0,
                        help="which face: 0 = the largest where faces first appear, then followed by position "
                        "(--list-faces shows each face's index)")
    parser.add_argument("--landmarks", default=defaults.landmarks, choices=LANDMARK_CHOICES,
                        help="face landmarks: insightface (official; needs its ONNX files from the download "
                        "command), mediapipe (offline), face-alignment; auto (default) = insightface when present")
    parser.add_argument(
        "--keep-video-tail", action="store_true",
        help="when the audio is shorter, keep the rest of the video (original frames, silence); "
        "the same as --length-mode keep-tail",
    )
    parser.add_argument(
        "--length-mode", choices=LENGTH_MODES, default=None,
        help="when speech and video lengths differ: pingpong (default: video plays back and forth to the speech's "
        "length), loop, cut (the shorter one decides), keep-tail (rest of the video as it was, silent), "
        "pad-silence (rest of the video lip-synced to silence: closed mouth)",
    )
    parser.add_argument("--consent", action="store_true",
                        help="confirm the consent of the person shown (and of the voice's owner when cloning); "
                             "also LATENTSYNC_CONSENT=1. Asked on a terminal otherwise")
    parser.add_argument("--score", action="store_true",
                        help="after the job, print the SyncNet lip-sync confidence of the result and of the "
                             "original (needs auxiliary/syncnet_v2.model: python -m latentsync_demo.eval --download)")
    parser.add_argument("--no-record", action="store_true",
                        help="keep no job record beside the output (<out>.job/: what `latentsync redo` needs)")
    c2pa = parser.add_argument_group("C2PA (a signed manifest inside the output; default: LATENTSYNC_C2PA* env)")
    c2pa.add_argument("--c2pa", choices=["test", "off"], default=None,
                      help="test: sign with a throwaway, untrusted test certificate; off: no embedded manifest")
    c2pa.add_argument("--c2pa-cert", help="your PEM certificate chain (signing certificate first); with --c2pa-key")
    c2pa.add_argument("--c2pa-key", help="the PEM private key of the signing certificate")
    voice = parser.add_argument_group("voice (XTTS v2 voice cloning; non-commercial CPML licence)")
    voice.add_argument("--voice", default="off", choices=VOICE_MODES,
                       help="revoice: say the audio's words in the on-screen speaker's voice; script: say --text; "
                       "translate: dub the video's own speech into --to, in the speaker's voice")
    voice.add_argument("--text", help="what the speaker should say (--voice script)")
    voice.add_argument("--language", help="language code of the speech, e.g. en, de, es (default: detected / en)")
    voice.add_argument("--voice-reference", help="a clip of the speaker's voice (default: the video's own audio)")
    voice.add_argument("--keep-room", action="store_true",
                       help="mix the video's own sound, ducked, under the new speech (music and ambience survive)")
    dub = parser.add_argument_group("translation dubbing (--voice translate)")
    dub.add_argument("--to", metavar="LANG", help="the language to dub into: " + ", ".join(LANGUAGES))
    dub.add_argument("--transcript-out", metavar="FILE", help="write the transcript (times, original, translation) "
                     "as .json or .srt; without --out, stop there so you can edit it")
    dub.add_argument("--transcript", metavar="FILE",
                     help="speak this edited transcript (.json or .srt) instead of transcribing and translating")
    dub.add_argument("--subtitles", choices=SUBTITLE_MODES, default="soft",
                     help="soft (default): a subtitle track in the MP4 and an .srt beside it; burn: drawn into the "
                     "picture; off: only the .srt")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_faces is not None:
        return _list_faces(args)
    _check_arguments(parser, args)
    if args.transcript_out and args.out is None:
        return _write_transcript(args)
    consent = args.consent or consent_from_env() or _ask_consent()
    if not consent:
        print("error: no consent given. Lip sync needs the consent of the person shown (and of the voice's "
              "owner when cloning a voice): pass --consent or set LATENTSYNC_CONSENT=1.", file=sys.stderr)
        return 2
    from .logs import quiet_native_logs
    from .request import settings_from
    from .service import LipSyncService

    quiet_native_logs()
    length_mode = args.length_mode or ("keep-tail" if args.keep_video_tail else None)
    settings = settings_from(
        args.sampler, args.steps, guidance_scale=args.guidance, seed=args.seed, face_index=args.face_index,
        landmarks=args.landmarks, length_mode=length_mode, deepcache=args.deepcache, chunk_batch=args.chunk_batch,
        window_frames=args.window_frames, audio_windows=args.audio_windows,
    )
    try:
        _make_output_folder(args.out)
        service = LipSyncService(checkpoints=args.checkpoints, device=args.device, max_seconds=None, max_pixels=None,
                                 compile_unet=args.compile, c2pa=_c2pa_choice(args), keep_records=not args.no_record)
        voice = VoiceRequest(args.voice, args.text, args.language, args.voice_reference, args.to,
                             args.transcript, args.subtitles, args.keep_room)
        # Every input is checked here: bad input fails before a model loads or a progress bar is drawn.
        request = service.prepare(args.video, args.audio, args.out, args.preset, settings, voice, consent=consent,
                                  speech=args.speech)
        if args.transcript_out:  # checked first; then transcribe and translate once: the file, and what is spoken
            request = replace(request, voice=replace(request.voice, transcript=_transcribe(service, args)))
        with tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {elapsed}<{remaining}") as bar:
            for event in service.run(request):
                bar.set_description(event.stage)
                bar.update(round(event.fraction * 100) - bar.n)
    except LatentSyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} (marked as AI-generated: watermark, metadata, {sidecar_path(args.out).name}"
          f"{_signed_note(event.manifest)})")
    if event.notes:  # what was looped, cut or padded; silent speech
        print(event.notes)
    if args.score:
        try:
            print(service.score_job(args.out, request.video, args.audio))
        except LatentSyncError as exc:
            print(f"lip sync not scored: {exc}", file=sys.stderr)
    return 0


def _check_arguments(parser: argparse.ArgumentParser, args) -> None:
    """The argument combinations argparse cannot express; parser.error (exit 2) names the one that is wrong."""
    transcript_only = args.voice == "translate" and args.transcript_out and args.out is None
    missing = [flag for flag, value in (("--video", args.video), ("--out", args.out))
               if value is None and not (flag == "--out" and transcript_only)]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)} (or --list-faces VIDEO)")
    if args.audio is None and args.voice not in ("script", "translate") and not args.speech:
        parser.error("--audio is required (unless --voice script --text ..., --voice translate --to LANG, or "
                     "--speech FACE=FILE per speaker)")
    if args.voice == "script" and not args.text:
        parser.error("--voice script needs --text")
    if args.voice == "translate" and not (args.to or args.transcript):
        parser.error("--voice translate needs --to LANG (the language to dub into), or an edited --transcript")
    dub_flags = [flag for flag, value in (("--to", args.to), ("--transcript", args.transcript),
                                          ("--transcript-out", args.transcript_out)) if value]
    if dub_flags and args.voice != "translate":
        parser.error(f"{' and '.join(dub_flags)} belong to --voice translate (dubbing into another language)")
    if args.keep_room and args.voice == "off":
        parser.error("--keep-room mixes the video's own sound under new speech: it goes with --voice revoice, "
                     "script or translate")
    if args.transcript_out:
        target = Path(args.transcript_out)
        if target.suffix.lower() not in (".json", ".srt"):
            parser.error(f"--transcript-out writes .json or .srt, not {target.name!r}")
        if not target.parent.is_dir():
            parser.error(f"--transcript-out: the folder {target.parent} does not exist")
    if args.transcript and args.transcript_out:
        parser.error("--transcript (speak an edited transcript) and --transcript-out (write a new one) exclude "
                     "each other: write one with --transcript-out, edit it, then pass it with --transcript")


def _transcribe(service, args):
    """Transcribe and translate the clip's speech, and write the transcript to ``--transcript-out``."""
    script = service.transcribe_translate(args.video, args.to, args.audio, args.language)
    script.save(args.transcript_out)
    print(f"wrote the transcript {args.transcript_out} ({len(script.segments)} segments, {script.source_language} "
          f"-> {script.target_language})")
    return script


def _write_transcript(args) -> int:
    """``--voice translate --transcript-out FILE`` without ``--out``: the transcript to edit, no lip sync."""
    from .logs import quiet_native_logs
    from .service import LipSyncService

    quiet_native_logs()
    try:
        service = LipSyncService(checkpoints=args.checkpoints, device=args.device, max_seconds=None,
                                 max_pixels=None)
        _transcribe(service, args)
    except LatentSyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"edit its translations, then: --voice translate --transcript {args.transcript_out} --out OUT.mp4")
    return 0


def _list_faces(args) -> int:
    """``--list-faces VIDEO``: one line per face (index, box, frames seen, share), or why there is none."""
    from .logs import quiet_native_logs
    from .service import LipSyncService

    quiet_native_logs()
    try:
        service = LipSyncService(checkpoints=args.checkpoints, device=args.device, max_seconds=None,
                                 max_pixels=None)
        faces = service.list_faces(args.list_faces, args.preset, args.landmarks, args.list_seconds)
    except LatentSyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not faces:
        print(f"no face found in the first {args.list_seconds:g} s of {Path(args.list_faces).name}", file=sys.stderr)
    for face in faces:
        print(face.line())
    return 0


def _c2pa_choice(args):
    """``--c2pa`` / ``--c2pa-cert`` + ``--c2pa-key`` as the service's ``c2pa`` argument (None: the environment)."""
    if args.c2pa_cert or args.c2pa_key:
        from .provenance.signing import C2paSigning, SigningConfigError

        if not (args.c2pa_cert and args.c2pa_key):
            raise SigningConfigError("--c2pa-cert and --c2pa-key go together (your certificate chain and its key)")
        return C2paSigning.from_pem(args.c2pa_cert, args.c2pa_key)
    return args.c2pa


def _signed_note(manifest) -> str:
    """", C2PA manifest signed by X" when the sidecar records an embedded manifest."""
    import json

    signature = json.loads(manifest.read_text()).get("signature") if manifest else None
    if not signature:
        return ""
    if not signature.get("embedded"):
        return f"; not signed: {signature.get('error')}"
    test = ", an UNTRUSTED TEST certificate" if signature.get("test_certificate") else ""
    return f", C2PA manifest signed by {signature.get('signer')}{test}"


def _ask_consent() -> bool:
    """On an interactive terminal, show the consent statement and ask once; elsewhere False."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return False
    print(consent_statement())
    try:
        return input("Type 'yes' to confirm: ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _make_output_folder(out: str) -> None:
    """Create the output's folder when missing (for a file name the job can write; the rest is validated)."""
    from .validation import OUTPUT_SUFFIXES

    folder = Path(out).parent
    if Path(out).suffix.lower() in OUTPUT_SUFFIXES and not folder.exists():
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise InputError(f"cannot create the output folder {folder} ({exc.strerror or exc}): "
                             "choose a folder you can write to.") from exc
