"""Gradio app: widgets wired to LipSyncService. No model code lives here.

    python app.py [--checkpoints DIR] [--device cuda|cpu] [--port 7860] [--max-seconds 120] [--max-pixels N]

Also runs as a Hugging Face Space (see the README front matter): the weights come from the front matter's
``preload_from_hub`` and load at start-up, and on ZeroGPU the generation handler runs under ``spaces.GPU`` with a
duration computed from the request (clip length, sampler, steps).

Layout: inputs on the left (media, voice, model and sampler, an Advanced accordion), status and results on the
right. The handlers live in ``latentsync_demo.app_handlers`` (``collect_settings`` there is the one place where
widget values become GenerationSettings); the ZeroGPU estimate and the Space start-up in ``latentsync_demo.space``.
"""

from __future__ import annotations

import os

from latentsync_demo.logs import quiet_native_logs

quiet_native_logs()

from latentsync_demo import space  # noqa: E402  (imports ZeroGPU's `spaces` before anything imports torch)

import argparse  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from latentsync_demo.app_handlers import (  # noqa: E402
    DUB_EDITABLE_COLUMN, DUB_HEADERS, GUIDANCE_INFO, LABEL_OF_SAMPLER, PRESET_BY_LABEL, REDO_IDLE, SAME_SAMPLER,
    SAMPLER_LABELS, SUBTITLE_LABELS, VOICE_LABELS, VOICE_OFF, DemoHandlers,
)
from latentsync_demo.errors import LatentSyncError  # noqa: E402
from latentsync_demo.face.landmarks import LANDMARK_CHOICES  # noqa: E402
from latentsync_demo.pipeline.length import LENGTH_MODES  # noqa: E402
from latentsync_demo.provenance.consent import consent_statement  # noqa: E402
from latentsync_demo.rest import RestAPI  # noqa: E402
from latentsync_demo.service import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SECONDS, LipSyncService  # noqa: E402
from latentsync_demo.store import DEFAULT_PRESET, PRESETS  # noqa: E402
from latentsync_demo.voice import LANGUAGES  # noqa: E402
from latentsync_demo.webhooks import add_callback_options, callback_policy  # noqa: E402

ASSETS = Path(__file__).parent / "assets"
# Short enough for a phone's dropdown (390 px wide); LENGTH_MODE_INFO says what each does.
LENGTH_MODE_LABELS = {"pingpong": "Ping-pong (video back and forth)", "loop": "Loop (video starts over)",
                      "cut": "Cut (the shorter decides)", "keep-tail": "Keep tail (rest of video, silent)",
                      "pad-silence": "Pad silence (closed mouth)"}
LENGTH_MODE_INFO = ("Speech longer than the video: loop repeats the video, cut stops at the video's end, the others "
                    "play it back and forth. Video longer: it ends with the speech, except with keep tail (the rest "
                    "as it was, silent) and pad silence (the rest with a closed mouth). The end summary says what "
                    "was done.")
AUDIO_WINDOW_LABELS = {"Seamless (default)": "seamless", "Official (30-s windows)": "official"}
CPML_NOTE = ("Voice cloning uses Coqui XTTS v2, licensed under the [Coqui Public Model License]"
             "(https://coqui.ai/cpml) (non-commercial use only).")
KEEP_ROOM = "The video's own sound (music, ambience) stays, ducked under the new speech."
SCROLL_TO_STATUS = "() => document.getElementById('status')?.scrollIntoView({behavior: 'smooth', block: 'start'})"
# After a refused request: bring the note by the consent box (and the box) back into view, on a phone too.
SCROLL_TO_NOTE = ("() => { const note = document.getElementById('form-note'); "
                  "if (note && note.offsetParent && note.textContent.trim()) "
                  "note.scrollIntoView({behavior: 'smooth', block: 'center'}); }")

REDO_HELP = ("**Redo a segment** of this result: seconds start-end are generated again with another seed (or "
             "steps, sampler) and cross-fade in over 3 frames at each edge; every whole second of the video outside "
             "them stays exactly as it is (the seconds that hold the span are re-encoded).")

# Gradio's upload boxes refuse a wrong kind of file in the browser, before any handler runs, with "Invalid file
# type: speech.wav. Only video/x-m4v,video/* allowed." (MIME jargon, fixed in its video component). This says it in
# the app's words instead, in the same message box, as it appears.
PAGE_HEAD = """<script>
(() => {
  const gradioWords = /^Invalid file types?: (.+)\\. Only (.+) allowed\\.$/;
  const ourWords = (names, allowed) => allowed.includes("video")
    ? `${names} is not a video: upload a video of a talking face (MP4, MOV, WebM or MKV).`
    : allowed.includes("audio")
    ? `${names} is not an audio file: upload the speech as WAV, MP3, M4A, FLAC or OGG.`
    : `${names} is not a kind of file this box takes.`;
  const reword = () => document.querySelectorAll('[data-testid="toast-text"]').forEach(el => {
    const said = el.textContent.trim().match(gradioWords);
    if (said) el.textContent = ourWords(said[1], said[2]);
  });
  new MutationObserver(reword).observe(document.documentElement, {childList: true, subtree: true});
})();
</script>"""


def second_speaker():
    """A dialogue's second speaker: their face index and speech (the Speech upload goes to the chosen face); both
    faces are lip-synced in one job (``LipSyncForm.speech``)."""
    with gr.Accordion("Dialogue: add a second speaker", open=False):
        face = gr.Number(value=1, precision=0, label="Second speaker's face index", elem_id="second-face")
        speech = gr.Audio(label="Second speaker's speech (the Speech above goes to the chosen face)",
                          sources=["upload", "microphone"], type="filepath", elem_id="second-speech")
    return face, speech


class RedoPanel:
    """"Redo a segment" under the result, shown after a finished job: a span, seed, steps and sampler, and the
    redone video with its own download (the first result stays where it is)."""

    def __init__(self):
        with gr.Column(visible=False, variant="panel", elem_id="redo") as self.group:
            gr.Markdown(REDO_HELP)
            with gr.Row():
                self.start = gr.Number(0.0, label="Start (s)", step=0.04, elem_id="redo-start")
                self.end = gr.Number(1.0, label="End (s)", step=0.04, elem_id="redo-end")
            with gr.Row():
                self.seed = gr.Number(1248, precision=0, label="Seed", elem_id="redo-seed")
                self.steps = gr.Number(0, precision=0, label="Steps (0: the job's)", elem_id="redo-steps")
                self.sampler = gr.Dropdown([SAME_SAMPLER, *SAMPLER_LABELS], value=SAME_SAMPLER, label="Sampler",
                                           elem_id="redo-sampler")
            self.button = gr.Button("Redo", elem_id="redo-run")
            self.note = gr.Markdown(visible=False, elem_id="redo-note")  # a user mistake, said here
            self.status = gr.Markdown(REDO_IDLE, elem_id="redo-status")
            self.video = gr.Video(label="Redone", interactive=False, elem_id="redo-out")
            self.download = gr.File(label="Download the redone video", elem_id="redo-download")

    def wire(self, on: DemoHandlers, job, base: gr.State) -> None:
        """Shown (span bounded by the result's length) after ``job`` ends; the Redo button is the API endpoint
        ``redo``, on the session's last finished job (``base``), with one progress display (its status)."""
        job.success(on.redo_controls, base, [self.group, self.start, self.end, self.seed, self.status, self.video,
                                             self.download, self.note], api_visibility="private")
        self.button.click(on.redo, [base, self.start, self.end, self.seed, self.steps, self.sampler],
                          [self.status, self.video, self.download, self.note], api_name="redo", concurrency_limit=1,
                          show_progress="hidden", show_progress_on=[base])


def voice_options_column():
    """What every voice mode may use (shown for all but Off): the speech's language, a voice sample, and whether the
    video's own sound stays under the new speech. Stacked: side by side left a grey gap."""
    with gr.Column(visible=False) as column:
        language = gr.Dropdown(list(LANGUAGES), value=None, label="Language (empty: detect / en)")
        reference = gr.Audio(label="Voice sample (optional; default: the video's own audio)",
                             sources=["upload", "microphone"], type="filepath")
        keep_room = gr.Checkbox(False, label="Keep the room sound", info=KEEP_ROOM, elem_id="keep-room")
    return column, language, reference, keep_room


class DubPanel:
    """Translate mode's widgets: the language to dub into, "Transcribe & translate", the transcript table (start,
    end, original, translation; only the translation is editable) and the subtitles choice. ``script`` holds the
    transcript behind the table; with no table, the job transcribes and translates by itself."""

    def __init__(self):
        with gr.Column(visible=False, elem_id="dub") as self.group:
            self.target = gr.Dropdown(list(LANGUAGES), value=None, label="Dub into", elem_id="dub-target")
            self.button = gr.Button("Transcribe & translate", elem_id="dub-transcribe")
            self.note = gr.Markdown(visible=False, elem_id="dub-note")
            fixed = [i for i in range(len(DUB_HEADERS)) if i != DUB_EDITABLE_COLUMN]
            self.table = gr.Dataframe(headers=DUB_HEADERS, datatype=["number", "number", "str", "str"], type="array",
                                      interactive=True, static_columns=fixed, wrap=True, elem_id="dub-table",
                                      label="Transcript: edit the translation before generating",
                                      column_widths=["15%", "15%", "35%", "35%"])
            self.script = gr.State(None)  # {"speech": which upload, "script": the DubScript's JSON}
            self.subtitles = gr.Radio(list(SUBTITLE_LABELS), value=next(iter(SUBTITLE_LABELS)), label="Subtitles",
                                      elem_id="dub-subtitles")

    def job_inputs(self) -> list:
        """The lipsync endpoint's translate inputs, in its API order: target_language, dub_table, dub_script,
        subtitles."""
        return [self.target, self.table, self.script, self.subtitles]

    def wire(self, on: DemoHandlers, voice_mode, video_in, audio_in, language, sources) -> None:
        """Shown in translate mode; the button is the API endpoint ``transcribe``; a new video or target language
        empties the table (its rows would be spoken over other words)."""
        voice_mode.change(on.dub_widgets, voice_mode, self.group, api_visibility="private")
        self.button.click(on.transcribe, [video_in, audio_in, self.target, language, sources],
                          [self.table, self.script, self.note], api_name="transcribe", concurrency_limit=1)
        for event in (video_in.upload, video_in.clear, self.target.input):
            event(on.clear_transcript, None, [self.table, self.script, self.note], queue=False,
                  api_visibility="private")


def build_demo(service: LipSyncService, allow_download: bool = True, consent_text: str | None = None) -> gr.Blocks:
    """The page: layout, then each widget's events wired to a DemoHandlers method."""
    statement = consent_text or consent_statement()  # set by the host: --consent-text / LATENTSYNC_CONSENT_TEXT
    on = DemoHandlers(service, allow_download)
    with gr.Blocks(title="LatentSync demo", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# LatentSync lip sync\nUpload a talking-head clip and new speech; watch each 16-frame chunk "
                    "arrive, then compare the original and the result.")
        weights_md = gr.Markdown(visible=False, elem_id="weights-note")
        download_btn = gr.Button("Download model weights", visible=False)
        sources = gr.State({})  # browser preview (path and content key) -> the uploaded original
        with gr.Row():
            with gr.Column():
                video_in = gr.Video(label="Video", sources=["upload", "webcam"], elem_id="video-in")
                preview_note = gr.Markdown(visible=False, elem_id="preview-note")  # why the video box spins
                # After an upload: a thumbnail per face of its first seconds; a click sets the face index.
                faces = gr.Gallery(label="Faces in the first seconds: click the one to lip-sync", visible=False,
                                   columns=6, height="auto", object_fit="contain", allow_preview=False,
                                   interactive=False, elem_id="faces")
                faces_note = gr.Markdown(visible=False, elem_id="faces-note")
                listed_faces = gr.State(None)  # the indices the thumbnails show, and for which video
                audio_in = gr.Audio(label="Speech", sources=["upload", "microphone"], type="filepath",
                                    elem_id="audio-in")
                second_face, second_speech = second_speaker()
                with gr.Group():
                    voice_mode = gr.Radio(list(VOICE_LABELS), value=VOICE_OFF, label="Voice", elem_id="voice-mode")
                    script = gr.Textbox(label="Script", lines=3, visible=False,
                                        placeholder="What should the speaker say?")
                    voice_options, language, voice_reference, keep_room = voice_options_column()
                    dub = DubPanel()
                    voice_note = gr.Markdown(visible=False, elem_id="voice-note")
                    cpml_agree = gr.Checkbox(False, label="I accept the CPML (needed to download XTTS)", visible=False)
                    voice_download_btn = gr.Button("Download voice models", visible=False)
                gr.Markdown(CPML_NOTE)
                preset = gr.Radio(list(PRESET_BY_LABEL), value=PRESETS[DEFAULT_PRESET].label, label="Model")
                sampler = gr.Radio(list(SAMPLER_LABELS), value=LABEL_OF_SAMPLER["ddim"], label="Sampler")
                steps = gr.Slider(1, 50, value=20, step=1, label="Steps")
                guidance = gr.Slider(1.0, 3.0, value=1.5, step=0.1, label="Audio guidance", info=GUIDANCE_INFO,
                                     elem_id="guidance")
                seed = gr.Number(value=1247, precision=0, label="Seed")
                with gr.Accordion("Advanced", open=False):
                    face_index = gr.Number(value=0, precision=0, elem_id="face-index",
                                           label="Face index (0 = the largest; click a face above to choose)")
                    length_mode = gr.Dropdown([(LENGTH_MODE_LABELS[m], m) for m in LENGTH_MODES], value="pingpong",
                                              label="When speech and video lengths differ", info=LENGTH_MODE_INFO,
                                              elem_id="length-mode")
                    landmarks = gr.Dropdown(list(LANDMARK_CHOICES), value="auto", label="Face landmarks",
                                            info="auto: insightface (as the official code) when its files are "
                                                 "downloaded, else mediapipe (offline)")
                    deepcache = gr.Checkbox(True, label="DeepCache",
                                            info="Reuse deep features on 2 of 3 steps (~2x faster; the official default)")
                    audio_windows = gr.Dropdown(list(AUDIO_WINDOW_LABELS.items()), value="seamless",
                                                label="Audio windows (speech over 30 s)", elem_id="audio-windows",
                                                info="Seamless reads long speech through overlapping 30-s windows, "
                                                     "so the lips do not glitch every 30 s; the same up to 30 s")
                    want_score = gr.Checkbox(False, label="Lip-sync score", elem_id="score",
                                             info="SyncNet's confidence for the result and the original, as in the "
                                                  "paper (its weights, about 150 MB, download when you tick this)")
                    score_note = gr.Markdown(visible=False, elem_id="score-note")
                consent = gr.Checkbox(False, label=statement, elem_id="consent")
                form_note = gr.Markdown(visible=False, elem_id="form-note")  # a user mistake, said here
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
                sync_md = gr.Markdown(visible=False, elem_id="sync-score")
                download_out = gr.File(label="Download", elem_id="download-out")
                srt_out = gr.File(label="Subtitles (.srt)", visible=False, elem_id="subtitles-out")
                voice_out = gr.Audio(label="New speech (voice cloning)", interactive=False, visible=False)
                redo_base = gr.State(None)  # the finished job (its result, with the record beside it) a redo works on
                redo = RedoPanel()  # after a finished job: regenerate seconds of its result
        examples = sorted(ASSETS.glob("examples/*.mp4"))
        if examples:
            gr.Examples([[str(v), str(v.with_suffix(".wav"))] for v in examples], [video_in, audio_in])

        # The lipsync endpoint's inputs, in API order (video and audio first, everything else defaulted).
        inputs = [video_in, audio_in, preset, sampler, steps, guidance, seed, face_index, length_mode,
                  voice_mode, script, language, voice_reference, landmarks, sources, consent, deepcache,
                  audio_windows, listed_faces, second_face, second_speech, *dub.job_inputs(), keep_room]
        outputs = [status, preview, compare_out, result_out, download_out, voice_out, form_note, srt_out, redo_base]
        run_btn.click(None, js=SCROLL_TO_STATUS)
        run_btn.click(on.arm, None, None, queue=False, api_visibility="private")
        # One progress display: the status line (stage, elapsed, ETA; its clock ticks during slow steps), not
        # Gradio's overlay on top of it and on every result panel. Gradio 6's page still draws its tracker on
        # the outputs with show_progress="hidden" alone, so it is pointed at a State, which has nothing to draw on.
        job = run_btn.click(on.lipsync, inputs, outputs, api_name="lipsync", concurrency_limit=1,
                            show_progress="hidden", show_progress_on=[sources])
        job.then(None, js=SCROLL_TO_NOTE)
        job.success(on.score_result, [status, video_in, audio_in, result_out, sources, want_score], sync_md,
                    api_visibility="private")
        redo.wire(on, job, redo_base)
        # .input, not .change: unticking the box after a failed download must not hide the note saying why
        want_score.input(on.score_option, want_score, [want_score, score_note], api_visibility="private")
        stop_btn.click(on.request_stop, None, status, queue=False, api_visibility="private")
        video_in.upload(on.preview_notice, video_in, preview_note, queue=False, show_progress="hidden",
                        api_visibility="private").then(on.show_upload, [video_in, sources],
                                                       [video_in, sources, preview_note], show_progress_on=video_in,
                                                       api_visibility="private").then(
            on.list_faces, [video_in, sources, preset, landmarks], [faces, listed_faces, faces_note],
            show_progress_on=faces, api_visibility="private")
        video_in.clear(on.clear_faces, None, [faces, listed_faces, faces_note], queue=False, api_visibility="private")
        faces.select(on.pick_face, listed_faces, [face_index, faces_note], queue=False, api_visibility="private")
        weights_outputs = [weights_md, download_btn, run_btn]
        preset.change(on.weights_note, preset, weights_outputs, api_visibility="private")
        download_btn.click(on.download, preset, weights_outputs, api_visibility="private")
        demo.load(on.weights_note, preset, weights_outputs, api_visibility="private")
        for trigger in (demo.load, preset.change, sampler.input):
            trigger(on.sampler_widgets, [preset, sampler], [sampler, steps, guidance], api_visibility="private")
        voice_outputs = [script, voice_options, voice_note, cpml_agree, voice_download_btn, voice_out]
        voice_mode.change(on.voice_widgets, voice_mode, voice_outputs, api_visibility="private")
        dub.wire(on, voice_mode, video_in, audio_in, language, sources)
        voice_download_btn.click(on.download_voice, [voice_mode, cpml_agree],
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
    add_callback_options(rest)  # webhooks: --callback-allow, --callback-secret, --callback-retries, ...
    parser.add_argument("--no-download", action="store_true", default=space.on_space(),
                        help="hide the weight download buttons (default on Hugging Face Spaces: the host adds "
                             "weights with preload_from_hub)")
    args = parser.parse_args()
    try:
        callbacks = callback_policy(args)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        service = LipSyncService(args.checkpoints, device=args.device, max_seconds=args.max_seconds,
                                 max_pixels=args.max_pixels, c2pa=args.c2pa)
    except LatentSyncError as exc:
        parser.error(str(exc))
    if space.on_space():
        space.bootstrap(service, args.checkpoints)
    demo = build_demo(service, allow_download=not args.no_download, consent_text=args.consent_text)
    app_kwargs = {}
    if not args.no_api:  # mounted on Gradio's own FastAPI server at start-up (no second server)
        api = RestAPI(service, args.api_token, args.api_max_upload_mb, args.api_retention_minutes * 60,
                      args.api_sync_max_seconds, max_pending=args.queue_size,
                      callbacks=callbacks)
        app_kwargs["lifespan"] = api.lifespan
    demo.queue(max_size=args.queue_size).launch(server_name=args.host, server_port=args.port, head=PAGE_HEAD,
                                                allowed_paths=[str(service.output_dir)], app_kwargs=app_kwargs)


if __name__ == "__main__":
    main()
