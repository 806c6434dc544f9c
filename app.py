"""Gradio app: widgets wired to LipSyncService. No model code lives here.

    python app.py [--checkpoints DIR] [--device cuda|cpu] [--port 7860] [--max-seconds 120] [--max-pixels N]

Also runs as a Hugging Face Space (see the README front matter): the weights come from the front matter's
``preload_from_hub`` and load at start-up, and on ZeroGPU the generation handler runs under ``spaces.GPU`` with a
duration computed from the request (clip length, sampler, steps).

Layout: inputs on the left (media, voice, model and sampler, an Advanced accordion), status and results on the
right. ``collect_settings`` is the one place where widget values become GenerationSettings.
"""

from __future__ import annotations

import os

from latentsync_demo.logs import quiet_native_logs

quiet_native_logs()

try:  # ZeroGPU: `spaces` must be imported before torch (latentsync_demo.logs imports nothing heavy)
    import spaces
except ImportError:
    spaces = None

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from latentsync_demo.errors import LatentSyncError, user_message  # noqa: E402
from latentsync_demo.face.landmarks import LANDMARK_CHOICES  # noqa: E402
from latentsync_demo.media import MODEL_FPS, probe  # noqa: E402
from latentsync_demo.media.preview import browser_preview, needs_preview  # noqa: E402
from latentsync_demo.pipeline import SAMPLERS  # noqa: E402
from latentsync_demo.pipeline.length import LENGTH_MODES  # noqa: E402
from latentsync_demo.settings import GenerationSettings  # noqa: E402
from latentsync_demo.provenance.consent import consent_statement  # noqa: E402
from latentsync_demo.rest import RestAPI  # noqa: E402
from latentsync_demo.service import (  # noqa: E402
    DEFAULT_MAX_PIXELS, DEFAULT_MAX_SECONDS, LipSyncService, VoiceRequest, run_summary,
)
from latentsync_demo.store import DEFAULT_PRESET, PRESETS  # noqa: E402
from latentsync_demo.voice import LANGUAGES  # noqa: E402

log = logging.getLogger("latentsync_demo.app")
ASSETS = Path(__file__).parent / "assets"
PRESET_BY_LABEL = {preset.label: name for name, preset in PRESETS.items()}
SAMPLER_LABELS = {"DDIM (quality)": "ddim", "DPM-Solver++ · 8 steps (fast)": "dpmpp", "UniPC · 8 steps (fast)": "unipc",
                  "LCM · 4 steps (speed)": "lcm"}
LABEL_OF_SAMPLER = {name: label for label, name in SAMPLER_LABELS.items()}
VOICE_LABELS = {"Off: use the uploaded speech": "off", "Re-voice: its words in the speaker's own voice": "revoice",
                "Script: type what the speaker says": "script"}
LENGTH_MODE_LABELS = {"pingpong": "Ping-pong: video plays back and forth to the speech's length",
                      "loop": "Loop: video starts over to the speech's length",
                      "cut": "Cut: the shorter of video and speech decides",
                      "keep-tail": "Keep tail: rest of the video as it was, silent",
                      "pad-silence": "Pad silence: rest of the video with a closed mouth, silent"}
CPML_NOTE = ("Voice cloning uses Coqui XTTS v2, licensed under the [Coqui Public Model License]"
             "(https://coqui.ai/cpml) (non-commercial use only).")
TINY_WEIGHTS_NOTE = ("To try the app offline without them, the host can write tiny random weights "
                     "(`python -m latentsync_demo.testing.tiny_checkpoints checkpoints/tiny`) and restart with "
                     "`--checkpoints checkpoints/tiny` (results are noise, every step runs).")
SCROLL_TO_STATUS = "() => document.getElementById('status')?.scrollIntoView({behavior: 'smooth', block: 'start'})"
# Stages before the first chunk: stopping there leaves nothing to keep.
EARLY_STAGES = ("voice", "loading models", "reading", "detecting faces", "encoding audio")

# ZeroGPU time per request: seconds per UNet batch row (16 frames) by preset, plus fixed and per-frame costs.
# Rough figures for an H200 slice; the quota is only charged for the time actually used.
GPU_SECONDS_PER_ROW = {"latentsync-1.5": 0.06, "latentsync-1.6": 0.2}
GPU_MIN_SECONDS, GPU_MAX_SECONDS = 40, int(os.environ.get("LATENTSYNC_GPU_MAX_SECONDS", 240))


def gpu_seconds(video, audio, preset_label, sampler_label, steps, *_, **__) -> int:
    """How long to borrow a ZeroGPU for one request (``spaces.GPU(duration=...)`` calls it with the handler's
    arguments): UNet rows = chunks x steps (x2 with guidance), plus face detection, encoding and voice cloning."""
    try:
        seconds = probe(audio or video).duration
    except Exception:  # the handler reports bad input itself; borrow little for it
        return GPU_MIN_SECONDS
    frames = seconds * MODEL_FPS
    spec = SAMPLERS.get(SAMPLER_LABELS.get(sampler_label, "ddim"), SAMPLERS["ddim"])
    rows = math.ceil(frames / 16) * max(1, int(steps or spec.default_steps)) * (2 if spec.uses_guidance else 1)
    per_row = GPU_SECONDS_PER_ROW.get(PRESET_BY_LABEL.get(preset_label, DEFAULT_PRESET), 0.2)
    estimate = 15 + 0.05 * frames + 1.5 * rows * per_row
    return int(min(GPU_MAX_SECONDS, max(GPU_MIN_SECONDS, estimate)))


def on_gpu(fn):
    """``spaces.GPU`` with a per-request duration on ZeroGPU; the function itself everywhere else."""
    return spaces.GPU(duration=gpu_seconds)(fn) if spaces is not None else fn


def collect_settings(steps, guidance, seed, face_index, length_mode, sampler_label, landmarks,
                     deepcache=True) -> GenerationSettings:
    """Widget values -> GenerationSettings. Values pass through as given (validation refuses bad ones with a
    message); only the UI's float-typed numbers become ints when they are whole."""
    return GenerationSettings(sampler=SAMPLER_LABELS.get(sampler_label, sampler_label),
                              num_inference_steps=_whole(steps), guidance_scale=guidance, seed=_whole(seed),
                              face_index=_whole(face_index), length_mode=length_mode or None,
                              landmarks=landmarks or "auto", deepcache=bool(deepcache))


def _whole(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def progress_line(label: str, fraction: float, elapsed: float) -> str:
    """"**Generating chunk 2 of 5** · 48% · 0:21 elapsed · about 0:23 left" (no ETA before generation starts)."""
    eta = f" · about {_clock(elapsed * (1 - fraction) / fraction)} left" if fraction >= 0.25 else ""
    return f"**{label}** · {fraction:.0%} · {_clock(elapsed)} elapsed{eta}"


def stage_label(event) -> str:
    """What is running now (a chunk event reports the chunk just finished)."""
    if event.stage == "generating" and event.chunk is not None:
        if event.chunk < event.num_chunks:
            return f"Generating chunk {event.chunk + 1} of {event.num_chunks}"
        return "Writing the video"
    return event.message[:1].upper() + event.message[1:]


def build_demo(service: LipSyncService, allow_download: bool = True, consent_text: str | None = None) -> gr.Blocks:
    statement = consent_text or consent_statement()  # set by the host: --consent-text / LATENTSYNC_CONSENT_TEXT
    stops: dict[str, threading.Event] = {}  # session -> the running job's stop switch
    stop_early: set[str] = set()  # sessions that pressed Stop while their job was still queued

    def weights_note(preset_label: str):
        missing = service.missing_files(PRESET_BY_LABEL[preset_label])
        if not missing:
            return gr.update(value="", visible=False), gr.update(visible=False), gr.update(
                interactive=True, value="Lip-sync")
        listed = ", ".join(f"`{path.name}`" for path in missing)
        how = ("Download them (a few GB) with the button below." if allow_download else
               "The host adds them (on Hugging Face: `preload_from_hub` in the Space's README).")
        note = (f"**Lip-sync is off: the model weights for {preset_label} are missing** ({listed}). {how}\n\n"
                f"{TINY_WEIGHTS_NOTE}")
        return (gr.update(value=note, visible=True), gr.update(visible=allow_download),
                gr.update(interactive=False, value="Lip-sync (model weights missing)"))

    def sampler_widgets(preset_label: str, sampler_label: str):
        """LCM is offered only when the preset has a distilled student; steps and guidance follow the sampler."""
        lcm_ready = service.has_lcm(PRESET_BY_LABEL[preset_label])
        name = SAMPLER_LABELS[sampler_label]
        name = name if lcm_ready or not SAMPLERS[name].needs_student else "ddim"
        spec = SAMPLERS[name]
        choices = [label for label, key in SAMPLER_LABELS.items() if lcm_ready or not SAMPLERS[key].needs_student]
        info = None if lcm_ready else "4-step LCM needs a distilled student in the checkpoints' lcm/ folder."
        return (gr.update(choices=choices, value=LABEL_OF_SAMPLER[name], info=info),
                gr.update(value=spec.default_steps, minimum=spec.min_steps, maximum=min(spec.max_steps, 50)),
                gr.update(interactive=spec.uses_guidance))

    def download(preset_label: str, progress=gr.Progress(track_tqdm=True)):
        if not allow_download:
            raise gr.Error("Downloads are turned off on this server; the host adds the model weights.")
        try:
            service.download(PRESET_BY_LABEL[preset_label])
        except LatentSyncError as exc:
            raise gr.Error(user_message(exc), duration=None) from exc
        return weights_note(preset_label)

    def voice_widgets(voice_label: str):
        """Script box, voice options and output only for a voice mode; what is missing shown before running."""
        mode = VOICE_LABELS[voice_label]
        missing = service.voice.missing_files(mode) if mode != "off" else []
        folders = sorted({path.parent.name for path in missing})
        note = (f"**Voice models missing** ({', '.join(folders)}): accept the licence and download them below "
                "(about 2 GB) before running." if missing else "")
        can_download = bool(missing) and allow_download
        return (gr.update(visible=mode == "script"), gr.update(visible=mode != "off"),
                gr.update(value=note, visible=bool(missing)), gr.update(visible=can_download),
                gr.update(visible=can_download), gr.update(visible=mode != "off"))

    def download_voice(voice_label: str, agreed: bool, progress=gr.Progress(track_tqdm=True)):
        if not agreed:
            raise gr.Error("Tick the box to accept the Coqui Public Model License (non-commercial) first.")
        try:
            service.voice.download(agree_to_cpml=True, mode=VOICE_LABELS[voice_label])
        except LatentSyncError as exc:
            raise gr.Error(user_message(exc), duration=None) from exc
        return ("Voice models are ready.", *voice_widgets(voice_label)[2:5])

    def show_upload(video, sources: dict | None, request: gr.Request):
        """Phone clips (HEVC) do not play in Chromium: show an H.264 copy, remember the original for the job."""
        sources = dict(sources or {})
        if not video:
            return gr.update(), sources
        try:
            if not needs_preview(video):
                return gr.update(), sources
            preview = browser_preview(video, service.new_output_path(name=Path(video).stem))
        except LatentSyncError as exc:
            raise gr.Error(user_message(exc, {video: Path(video).name}), duration=None) from exc
        sources[str(preview)] = video
        return str(preview), sources

    def arm(request: gr.Request):
        """On click, before the queued job: forget a Stop pressed earlier."""
        stop_early.discard(request.session_hash)

    def request_stop(request: gr.Request):
        switch = stops.get(request.session_hash)
        if switch is None:
            stop_early.add(request.session_hash)
            return "**Stopped** before it started."
        switch.set()
        return "**Stopping** after the chunk being generated…"

    @on_gpu
    def lipsync(video, audio, preset_label, sampler_label, steps, guidance, seed, face_index, length_mode,
                voice_label="Off: use the uploaded speech", script=None, language=None, voice_reference=None,
                landmarks="auto", sources=None, consent=False, deepcache=True, request: gr.Request = None, progress=gr.Progress()):
        source = (sources or {}).get(str(video), video) if video else video
        names = {str(p): Path(p).name for p in (source, audio, voice_reference) if p}
        if video and source != video:
            names[str(video)] = Path(source).name
        keep = gr.update()
        session = getattr(request, "session_hash", None) or "api"
        stop = stops[session] = threading.Event()
        if session in stop_early:
            stop_early.discard(session)
            yield "**Stopped** before it started.", keep, keep, keep, keep, keep
            return
        preset = PRESET_BY_LABEL.get(preset_label, preset_label)
        try:
            settings = collect_settings(steps, guidance, seed, face_index, length_mode, sampler_label, landmarks,
                                        deepcache)
            voice = VoiceRequest(VOICE_LABELS.get(voice_label, voice_label), script or None, language or None,
                                 voice_reference)
            stem = Path(source).stem if source else "video"
            out = service.new_output_path(name=f"{stem}_lipsync")
            compare = out.with_name(f"{stem}_side_by_side.mp4")
            started = time.monotonic()
            job = service.lipsync(source, audio or None, out, preset, settings, voice, stop=stop, compare=compare,
                                 consent=consent is True)
            for event in job:
                elapsed = time.monotonic() - started
                if event.stage in ("done", "stopped"):
                    summary = run_summary(event.frames, elapsed, settings, preset, service.device)
                    head = "**Done**" if event.stage == "done" else f"**Stopped** after chunk {event.chunk} of " \
                        f"{event.num_chunks}; the finished part is below"
                    yield f"{head} · {summary}", keep, str(event.compare), str(event.output), str(event.output), keep
                    return
                if stop.is_set() and event.stage in EARLY_STAGES:
                    job.close()
                    yield "**Stopped** before the first chunk was generated.", keep, keep, keep, keep, keep
                    return
                label = stage_label(event)
                progress(event.fraction, desc=label)
                preview = event.preview if event.preview is not None else keep
                speech = str(event.audio) if event.audio is not None else keep
                yield progress_line(label, event.fraction, elapsed), preview, keep, keep, keep, speech
        except LatentSyncError as exc:
            raise gr.Error(user_message(exc, names), duration=None) from exc
        except Exception as exc:  # keep serving; the user sees that it broke, the log has the trace
            log.exception("lip-sync job failed")
            raise gr.Error(f"Something went wrong on the server ({type(exc).__name__}). Please try again; "
                           "if it happens again, try another clip.") from exc
        finally:
            if stops.get(session) is stop:
                del stops[session]

    @on_gpu
    def score_result(video, audio, result):
        """After a job: "Lip sync: confidence X (original clip: Y), offset Z frames" (SyncNet, as the paper)."""
        missing = service.metric_files_missing()
        if any(path.name == "syncnet_v2.model" for path in missing):
            return ("Lip-sync score: download the SyncNet and face-detector weights (about 150 MB, once) to see "
                    "the paper's confidence number here.", gr.update(visible=allow_download))
        if not result:
            return "", gr.update(visible=bool(missing) and allow_download)
        try:
            return service.score_job(result, video, audio or None), gr.update(visible=bool(missing) and allow_download)
        except LatentSyncError as exc:
            return f"Lip sync not scored: {user_message(exc)}", gr.update(visible=bool(missing) and allow_download)
        except Exception as exc:  # the video is already there: a failed score must not look like a failed job
            log.exception("lip-sync scoring failed")
            return f"Lip sync not scored ({type(exc).__name__}).", gr.update()

    def download_metric(progress=gr.Progress(track_tqdm=True)):
        try:
            service.download_metric_weights()
        except LatentSyncError as exc:
            raise gr.Error(user_message(exc), duration=None) from exc
        return "Lip-sync scoring weights are ready: the next job shows its score.", gr.update(visible=False)

    with gr.Blocks(title="LatentSync demo", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# LatentSync lip sync\nUpload a talking-head clip and new speech; watch each 16-frame chunk "
                    "arrive, then compare the original and the result.")
        weights_md = gr.Markdown(visible=False, elem_id="weights-note")
        download_btn = gr.Button("Download model weights", visible=False)
        sources = gr.State({})  # browser preview path -> the uploaded original
        with gr.Row():
            with gr.Column():
                video_in = gr.Video(label="Video", sources=["upload", "webcam"], elem_id="video-in")
                audio_in = gr.Audio(label="Speech", sources=["upload", "microphone"], type="filepath",
                                    elem_id="audio-in")
                with gr.Group():
                    voice_mode = gr.Radio(list(VOICE_LABELS), value=next(iter(VOICE_LABELS)), label="Voice",
                                          elem_id="voice-mode")
                    script = gr.Textbox(label="Script", lines=3, visible=False,
                                        placeholder="What should the speaker say?")
                    with gr.Row(visible=False) as voice_options:
                        language = gr.Dropdown(list(LANGUAGES), value=None, label="Language (empty: detect / en)")
                        voice_reference = gr.Audio(label="Voice sample (optional; default: the video's own audio)",
                                                   sources=["upload", "microphone"], type="filepath")
                    voice_note = gr.Markdown(visible=False, elem_id="voice-note")
                    cpml_agree = gr.Checkbox(False, label="I accept the CPML (needed to download XTTS)", visible=False)
                    voice_download_btn = gr.Button("Download voice models", visible=False)
                gr.Markdown(CPML_NOTE)
                preset = gr.Radio(list(PRESET_BY_LABEL), value=PRESETS[DEFAULT_PRESET].label, label="Model")
                sampler = gr.Radio(list(SAMPLER_LABELS), value=LABEL_OF_SAMPLER["ddim"], label="Sampler")
                steps = gr.Slider(1, 50, value=20, step=1, label="Steps")
                guidance = gr.Slider(1.0, 3.0, value=1.5, step=0.1, label="Audio guidance")
                seed = gr.Number(value=1247, precision=0, label="Seed")
                with gr.Accordion("Advanced", open=False):
                    face_index = gr.Number(value=0, precision=0, label="Face index (0 = the largest in frame)")
                    length_mode = gr.Dropdown([(LENGTH_MODE_LABELS[m], m) for m in LENGTH_MODES], value="pingpong",
                                              label="When speech and video lengths differ", elem_id="length-mode")
                    landmarks = gr.Dropdown(list(LANDMARK_CHOICES), value="auto", label="Face landmarks",
                                            info="auto: insightface (as the official code) when its files are "
                                                 "downloaded, else mediapipe (offline)")
                    deepcache = gr.Checkbox(True, label="DeepCache",
                                            info="Reuse deep features on 2 of 3 steps (~2x faster; the official default)")
                consent = gr.Checkbox(False, label=statement, elem_id="consent")
                with gr.Row():
                    run_btn = gr.Button("Lip-sync", variant="primary", elem_id="run")
                    stop_btn = gr.Button("Stop", elem_id="stop")
            with gr.Column():
                status = gr.Markdown("Results appear here.", elem_id="status")
                preview = gr.Image(label="Latest chunk: face the model saw | face it made", type="numpy",
                                   interactive=False, elem_id="preview")
                compare_out = gr.Video(label="Original | lip-synced (one player, always in sync)", interactive=False,
                                       elem_id="compare-out")
                result_out = gr.Video(label="Lip-synced", interactive=False, elem_id="result-out")
                sync_md = gr.Markdown(elem_id="sync-score")
                sync_download_btn = gr.Button("Download lip-sync scoring weights", visible=False)
                download_out = gr.File(label="Download", elem_id="download-out")
                voice_out = gr.Audio(label="New speech (voice cloning)", interactive=False, visible=False)
        examples = sorted(ASSETS.glob("examples/*.mp4"))
        if examples:
            gr.Examples([[str(v), str(v.with_suffix(".wav"))] for v in examples], [video_in, audio_in])

        # The lipsync endpoint's inputs, in API order (video and audio first, everything else defaulted).
        inputs = [video_in, audio_in, preset, sampler, steps, guidance, seed, face_index, length_mode,
                  voice_mode, script, language, voice_reference, landmarks, sources, consent, deepcache]
        outputs = [status, preview, compare_out, result_out, download_out, voice_out]
        run_btn.click(None, js=SCROLL_TO_STATUS)
        run_btn.click(arm, None, None, queue=False, api_visibility="private")
        job = run_btn.click(lipsync, inputs, outputs, api_name="lipsync", concurrency_limit=1)
        job.success(score_result, [video_in, audio_in, result_out], [sync_md, sync_download_btn],
                    api_visibility="private")
        sync_download_btn.click(download_metric, None, [sync_md, sync_download_btn], api_visibility="private")
        stop_btn.click(request_stop, None, status, queue=False, api_visibility="private")
        video_in.upload(show_upload, [video_in, sources], [video_in, sources], api_visibility="private")
        weights_outputs = [weights_md, download_btn, run_btn]
        preset.change(weights_note, preset, weights_outputs, api_visibility="private")
        download_btn.click(download, preset, weights_outputs, api_visibility="private")
        demo.load(weights_note, preset, weights_outputs, api_visibility="private")
        for trigger in (demo.load, preset.change, sampler.input):
            trigger(sampler_widgets, [preset, sampler], [sampler, steps, guidance], api_visibility="private")
        voice_outputs = [script, voice_options, voice_note, cpml_agree, voice_download_btn, voice_out]
        voice_mode.change(voice_widgets, voice_mode, voice_outputs, api_visibility="private")
        voice_download_btn.click(download_voice, [voice_mode, cpml_agree],
                                 [status, voice_note, cpml_agree, voice_download_btn], api_visibility="private")
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description="LatentSync lip-sync web app")
    parser.add_argument("--checkpoints", default=os.environ.get("LATENTSYNC_CHECKPOINTS"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--max-seconds", type=float, default=float(os.environ.get("LATENTSYNC_MAX_SECONDS",
                                                                                DEFAULT_MAX_SECONDS)))
    parser.add_argument("--max-pixels", type=int, default=int(os.environ.get("LATENTSYNC_MAX_PIXELS",
                                                                           DEFAULT_MAX_PIXELS)),
                        help="largest video frame accepted, width x height (default: 4K UHD)")
    parser.add_argument("--queue-size", type=int, default=16)
    parser.add_argument("--consent-text", default=None,
                        help="the consent statement users must tick (default: $LATENTSYNC_CONSENT_TEXT or built-in)")
    parser.add_argument("--c2pa", choices=["test", "off"], default=None,
                        help="signed C2PA manifest in every output: test = untrusted test certificate, off = none "
                             "(default: $LATENTSYNC_C2PA, or your certificate from $LATENTSYNC_C2PA_CERT/_KEY)")
    rest = parser.add_argument_group("REST API at /api/v1 (docs at /docs), on the same server and GPU queue")
    rest.add_argument("--no-api", action="store_true", help="serve the web app only")
    rest.add_argument("--api-token", default=os.environ.get("LATENTSYNC_API_TOKEN"),
                      help="require 'Authorization: Bearer TOKEN' on every API call (env LATENTSYNC_API_TOKEN)")
    rest.add_argument("--api-max-upload-mb", type=float, default=200.0, help="largest accepted upload per file")
    rest.add_argument("--api-retention-minutes", type=float, default=60.0,
                      help="job files and results are removed this long after the job ends")
    rest.add_argument("--api-sync-max-seconds", type=float, default=20.0, help="longest clip POST /api/v1/sync takes")
    parser.add_argument("--no-download", action="store_true", default=bool(os.environ.get("SPACE_ID")),
                        help="hide the weight download buttons (default on Hugging Face Spaces: the host adds "
                             "weights with preload_from_hub)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        service = LipSyncService(args.checkpoints, device=args.device, max_seconds=args.max_seconds,
                                 max_pixels=args.max_pixels, c2pa=args.c2pa)
    except LatentSyncError as exc:
        parser.error(str(exc))
    if os.environ.get("SPACE_ID"):
        from latentsync_demo.download import link_from_hub_cache

        for name in PRESETS:  # preload_from_hub put the files in the Hugging Face cache at build time
            link_from_hub_cache(name, args.checkpoints)
        if not service.missing_files():
            service.models()  # ZeroGPU: weights go to the device at start-up, not inside a request
    demo = build_demo(service, allow_download=not args.no_download, consent_text=args.consent_text)
    app_kwargs = {}
    if not args.no_api:  # mounted on Gradio's own FastAPI server at start-up (no second server)
        api = RestAPI(service, args.api_token, args.api_max_upload_mb, args.api_retention_minutes * 60,
                      args.api_sync_max_seconds, max_pending=args.queue_size)
        app_kwargs["lifespan"] = api.lifespan
    demo.queue(max_size=args.queue_size).launch(server_name=args.host, server_port=args.port,
                                                allowed_paths=[str(service.output_dir)], app_kwargs=app_kwargs)


if __name__ == "__main__":
    main()
