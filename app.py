"""Gradio app: widgets wired to LipSyncService. No model code lives here.

    python app.py [--checkpoints DIR] [--device cuda|cpu] [--port 7860] [--max-seconds 120]

Also runs as a Hugging Face Space (see the README front matter); on ZeroGPU the generation handler is
wrapped in ``spaces.GPU`` and the models are loaded at start-up, as ZeroGPU requires.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import gradio as gr

from latentsync_demo.errors import LatentSyncError
from latentsync_demo.face.landmarks import LANDMARK_CHOICES
from latentsync_demo.pipeline import SAMPLERS
from latentsync_demo.pipeline.length import LENGTH_MODES
from latentsync_demo.rest import RestAPI
from latentsync_demo.service import DEFAULT_MAX_SECONDS, LipSyncService, VoiceRequest
from latentsync_demo.store import DEFAULT_PRESET, PRESETS
from latentsync_demo.voice import LANGUAGES

try:  # ZeroGPU: borrow a GPU for the duration of one request
    import spaces

    on_gpu = spaces.GPU(duration=300)
except ImportError:

    def on_gpu(fn):
        return fn


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


def build_demo(service: LipSyncService) -> gr.Blocks:
    def weights_note(preset_label: str) -> tuple[dict, dict]:
        missing = service.missing_files(PRESET_BY_LABEL[preset_label])
        if not missing:
            return gr.update(value="", visible=False), gr.update(visible=False)
        listed = "\n".join(f"- `{path}`" for path in missing)
        note = f"**Model weights are missing** for {preset_label}:\n{listed}\n\nDownload them (a few GB) below."
        return gr.update(value=note, visible=True), gr.update(visible=True)

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
        try:
            service.download(PRESET_BY_LABEL[preset_label])
        except LatentSyncError as exc:
            raise gr.Error(str(exc), duration=None) from exc
        return weights_note(preset_label)

    def download_voice(voice_label: str, agreed: bool, progress=gr.Progress(track_tqdm=True)):
        if not agreed:
            raise gr.Error("Tick the box to accept the Coqui Public Model License (non-commercial) first.")
        try:
            service.voice.download(agree_to_cpml=True, mode=VOICE_LABELS[voice_label])
        except LatentSyncError as exc:
            raise gr.Error(str(exc), duration=None) from exc
        return "Voice models are ready."

    def voice_widgets(voice_label: str):
        mode = VOICE_LABELS[voice_label]
        missing = service.voice.missing_files(mode) if mode != "off" else []
        return (gr.update(visible=mode == "script"), gr.update(visible=mode != "off"),
                gr.update(visible=bool(missing)), gr.update(visible=bool(missing)))

    @on_gpu
    def lipsync(video, audio, preset_label, sampler_label, steps, guidance, seed, face_index, length_mode,
                voice_label="Off: use the uploaded speech", script=None, language=None, voice_reference=None,
                landmarks="auto", deepcache=True, progress=gr.Progress()):
        voice = VoiceRequest(VOICE_LABELS[voice_label], script or None, language or None, voice_reference)
        if not video:
            raise gr.Error("Upload (or record) a video of a talking face first.")
        if not audio and voice.mode != "script":
            raise gr.Error("Upload (or record) the speech the face should say.")
        out = service.new_output_path()
        overrides = dict(num_inference_steps=int(steps), guidance_scale=float(guidance), seed=int(seed),
                         face_index=int(face_index), length_mode=length_mode or None,
                         landmarks=landmarks or "auto", deepcache=bool(deepcache))
        overrides["sampler"] = SAMPLER_LABELS[sampler_label]
        try:
            for event in service.lipsync(video, audio or None, out, PRESET_BY_LABEL[preset_label], voice=voice,
                                         **overrides):
                progress(event.fraction, desc=event.message)
                keep = gr.update()
                if event.stage == "done":
                    yield "Done.", keep, video, str(event.output), str(event.output), keep
                else:
                    preview = event.preview if event.preview is not None else keep
                    speech = str(event.audio) if event.audio is not None else keep
                    yield f"{event.message}…", preview, keep, keep, keep, speech
        except LatentSyncError as exc:
            raise gr.Error(str(exc), duration=None) from exc
        except Exception as exc:  # keep serving; the user sees what broke, the log has the trace
            log.exception("lip-sync job failed")
            raise gr.Error(f"Something went wrong ({type(exc).__name__}: {exc}). Please try again.") from exc

    @on_gpu
    def score_result(video, audio, result):
        """After a job: "Lip sync: confidence X (original clip: Y), offset Z frames" (SyncNet, as the paper)."""
        missing = service.metric_files_missing()
        if any(path.name == "syncnet_v2.model" for path in missing):
            return ("Lip-sync score: download the SyncNet and face-detector weights (about 150 MB, once) to see "
                    "the paper's confidence number here.", gr.update(visible=True))
        if not result:
            return "", gr.update(visible=bool(missing))
        try:
            return service.score_job(result, video, audio or None), gr.update(visible=bool(missing))
        except LatentSyncError as exc:
            return f"Lip sync not scored: {exc}", gr.update(visible=bool(missing))
        except Exception as exc:  # the video is already there: a failed score must not look like a failed job
            log.exception("lip-sync scoring failed")
            return f"Lip sync not scored ({type(exc).__name__}).", gr.update()

    def download_metric(progress=gr.Progress(track_tqdm=True)):
        try:
            service.download_metric_weights()
        except LatentSyncError as exc:
            raise gr.Error(str(exc), duration=None) from exc
        return "Lip-sync scoring weights are ready: the next job shows its score.", gr.update(visible=False)

    with gr.Blocks(title="LatentSync demo", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# LatentSync lip sync\nUpload a talking-head clip and new speech; watch each 16-frame chunk "
                    "arrive, then compare the original and the result.")
        weights_md = gr.Markdown(visible=False)
        download_btn = gr.Button("Download model weights", visible=False)
        with gr.Row():
            with gr.Column():
                video_in = gr.Video(label="Video", sources=["upload", "webcam"], elem_id="video-in")
                audio_in = gr.Audio(label="Speech", sources=["upload", "microphone"], type="filepath", elem_id="audio-in")
                preset = gr.Radio(list(PRESET_BY_LABEL), value=PRESETS[DEFAULT_PRESET].label, label="Model")
                sampler = gr.Radio(list(SAMPLER_LABELS), value=LABEL_OF_SAMPLER["ddim"], label="Sampler")
                steps = gr.Slider(1, 50, value=20, step=1, label="Steps")
                guidance = gr.Slider(1.0, 3.0, value=1.5, step=0.1, label="Audio guidance")
                seed = gr.Number(value=1247, precision=0, label="Seed")
                with gr.Group():
                    voice_mode = gr.Radio(list(VOICE_LABELS), value=next(iter(VOICE_LABELS)), label="Voice",
                                          elem_id="voice-mode")
                    script = gr.Textbox(label="Script", lines=3, visible=False,
                                        placeholder="What should the speaker say?")
                    with gr.Row(visible=False) as voice_options:
                        language = gr.Dropdown(list(LANGUAGES), value=None, label="Language (empty: detect / en)")
                        voice_reference = gr.Audio(label="Voice sample (optional; default: the video's own audio)",
                                                   sources=["upload", "microphone"], type="filepath")
                    gr.Markdown(CPML_NOTE)
                    cpml_agree = gr.Checkbox(False, label="I accept the CPML (needed to download XTTS)", visible=False)
                    voice_download_btn = gr.Button("Download voice models", visible=False)
                with gr.Accordion("Advanced", open=False):
                    face_index = gr.Number(value=0, precision=0, label="Face (0 = largest in frame)")
                    length_mode = gr.Dropdown([(LENGTH_MODE_LABELS[m], m) for m in LENGTH_MODES], value="pingpong",
                                              label="When speech and video lengths differ", elem_id="length-mode")
                    landmarks = gr.Dropdown(list(LANDMARK_CHOICES), value="auto", label="Face landmarks",
                                            info="auto: insightface (as the official code) when its files are "
                                                 "downloaded, else mediapipe (offline)")
                    deepcache = gr.Checkbox(True, label="DeepCache",
                                            info="Reuse deep features on 2 of 3 steps (~2x faster; the official default)")
                with gr.Row():
                    run_btn = gr.Button("Lip-sync", variant="primary", elem_id="run")
                    stop_btn = gr.Button("Stop")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                preview = gr.Image(label="Latest chunk: original | result", type="numpy", interactive=False)
                with gr.Row():
                    original_out = gr.Video(label="Original", interactive=False, elem_id="original-out")
                    result_out = gr.Video(label="Lip-synced", interactive=False, elem_id="result-out")
                sync_md = gr.Markdown(elem_id="sync-score")
                sync_download_btn = gr.Button("Download lip-sync scoring weights", visible=False)
                download_out = gr.File(label="Download")
                voice_out = gr.Audio(label="New speech (voice cloning)", interactive=False)
        examples = sorted(ASSETS.glob("examples/*.mp4"))
        if examples:
            gr.Examples([[str(v), str(v.with_suffix(".wav"))] for v in examples], [video_in, audio_in])

        inputs = [video_in, audio_in, preset, sampler, steps, guidance, seed, face_index, length_mode,
                  voice_mode, script, language, voice_reference, landmarks, deepcache]
        outputs = [status, preview, original_out, result_out, download_out, voice_out]
        job = run_btn.click(lipsync, inputs, outputs, api_name="lipsync", concurrency_limit=1)
        stop_btn.click(None, cancels=[job])
        job.success(score_result, [video_in, audio_in, result_out], [sync_md, sync_download_btn],
                    api_visibility="private")
        sync_download_btn.click(download_metric, None, [sync_md, sync_download_btn], api_visibility="private")
        preset.change(weights_note, preset, [weights_md, download_btn], api_visibility="private")
        download_btn.click(download, preset, [weights_md, download_btn], api_visibility="private")
        demo.load(weights_note, preset, [weights_md, download_btn], api_visibility="private")
        for trigger in (demo.load, preset.change, sampler.input):
            trigger(sampler_widgets, [preset, sampler], [sampler, steps, guidance], api_visibility="private")
        voice_mode.change(voice_widgets, voice_mode, [script, voice_options, cpml_agree, voice_download_btn],
                          api_visibility="private")
        voice_download_btn.click(download_voice, [voice_mode, cpml_agree], status, api_visibility="private")
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description="LatentSync lip-sync web app")
    parser.add_argument("--checkpoints", default=os.environ.get("LATENTSYNC_CHECKPOINTS"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--max-seconds", type=float, default=float(os.environ.get("LATENTSYNC_MAX_SECONDS",
                                                                                DEFAULT_MAX_SECONDS)))
    parser.add_argument("--queue-size", type=int, default=16)
    rest = parser.add_argument_group("REST API at /api/v1 (docs at /docs), on the same server and GPU queue")
    rest.add_argument("--no-api", action="store_true", help="serve the web app only")
    rest.add_argument("--api-token", default=os.environ.get("LATENTSYNC_API_TOKEN"),
                      help="require 'Authorization: Bearer TOKEN' on every API call (env LATENTSYNC_API_TOKEN)")
    rest.add_argument("--api-max-upload-mb", type=float, default=200.0, help="largest accepted upload per file")
    rest.add_argument("--api-retention-minutes", type=float, default=60.0,
                      help="job files and results are removed this long after the job ends")
    rest.add_argument("--api-sync-max-seconds", type=float, default=20.0, help="longest clip POST /api/v1/sync takes")
    args = parser.parse_args()
    service = LipSyncService(args.checkpoints, device=args.device, max_seconds=args.max_seconds)
    if os.environ.get("SPACE_ID") and not service.missing_files():
        service.models()  # ZeroGPU: weights go to the device at start-up, not inside a request
    demo = build_demo(service)
    app_kwargs = {}
    if not args.no_api:  # mounted on Gradio's own FastAPI server at start-up (no second server)
        api = RestAPI(service, args.api_token, args.api_max_upload_mb, args.api_retention_minutes * 60,
                      args.api_sync_max_seconds, max_pending=args.queue_size)
        app_kwargs["lifespan"] = api.lifespan
    demo.queue(max_size=args.queue_size).launch(server_name=args.host, server_port=args.port,
                                                allowed_paths=[str(service.output_dir)], app_kwargs=app_kwargs)


if __name__ == "__main__":
    main()
