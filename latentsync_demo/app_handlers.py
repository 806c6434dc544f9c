"""The web app's event handlers, apart from its layout (app.py), so that they can be tested without a server.

``DemoHandlers(service, allow_download)`` holds every handler that app.py wires to a widget. Three functions carry
the mappings a reader looks for: ``collect_settings`` (widget values -> GenerationSettings),
``DemoHandlers.start_job`` (one request's widget values -> the ``service.lipsync`` call) and
``DemoHandlers.start_redo`` (the redo panel's values -> the ``service.redo`` call on the page's finished job).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import gradio as gr

from .errors import InputError, LatentSyncError, as_sentence, user_message
from .media import MODEL_FPS
from .media.preview import browser_preview, needs_preview
from .pipeline import SAMPLERS
from .pipeline.record import record_dir
from .provenance.consent import ConsentError
from .service import LipSyncService, run_summary
from .settings import GenerationSettings, VoiceRequest
from .space import frames_gpu_seconds, gpu_seconds, on_gpu
from .store import DEFAULT_PRESET, PRESETS
from .voice.dubbing import DubScript, script_from_json, xtts_language

log = logging.getLogger("latentsync_demo.app")

PRESET_BY_LABEL = {preset.label: name for name, preset in PRESETS.items()}
SAMPLER_LABELS = {"DDIM (quality)": "ddim", "DPM-Solver++ · 8 steps (fast)": "dpmpp", "UniPC · 8 steps (fast)": "unipc",
                  "LCM · 4 steps (speed)": "lcm"}
LABEL_OF_SAMPLER = {name: label for label, name in SAMPLER_LABELS.items()}
VOICE_LABELS = {"Off: use the uploaded speech": "off", "Re-voice: its words in the speaker's own voice": "revoice",
                "Script: type what the speaker says": "script",
                "Translate: dub into another language": "translate"}
VOICE_OFF = next(iter(VOICE_LABELS))
SUBTITLE_LABELS = {"Soft: a track players can switch on and off": "soft", "Burned into the picture": "burn",
                   "Off: only the .srt file": "off"}
DUB_HEADERS = ["start", "end", "original", "translation"]
DUB_EDITABLE_COLUMN = 3  # the translation: start, end and original stay as transcribed
TINY_WEIGHTS_NOTE = ("To try the app offline without them, the host can write tiny random weights "
                     "(`python -m latentsync_demo.testing.tiny_checkpoints checkpoints/tiny`) and restart with "
                     "`--checkpoints checkpoints/tiny` (results are noise, every step runs).")
GUIDANCE_INFO = "How closely the mouth follows the speech: 1 = no guidance, 1.5 = the official setting."
GUIDANCE_BUILT_IN = ("Not used by {}: its distilled model has the guidance built in (one pass per step instead of "
                     "two), so this setting has no effect.")
PREVIEW_NOTE = "Making a preview your browser can play (phone videos are HEVC); the job uses your original file."
SCORE_WEIGHTS_GONE = ("The lip-sync score needs the SyncNet weights, which this server does not have (the host "
                      "adds them: `python -m latentsync_demo.download --metric`).")
CONSENT_NOTE = ("**Tick the consent box above first.** Lip sync needs the consent of the person shown (and of the "
                "voice's owner when cloning a voice).")
# "Redo a segment": the sampler choice that keeps the job's own, and what the redo note says when there is
# nothing (left) to redo.
SAME_SAMPLER = "Same as the job"
REDO_IDLE = "Choose seconds of the result to generate again."
NO_JOB_TO_REDO = ("There is no finished lip-sync result on this page to redo a segment of: run a lip-sync job "
                  "first (a stopped job cannot be redone).")
RESULT_GONE = ("This result is no longer on the server (results are kept for an hour), and its job record went "
               "with it: run the lip-sync again, then redo a segment of the new result.")
# Stages before the first chunk: stopping there leaves nothing to keep.
EARLY_STAGES = ("voice", "loading models", "reading", "detecting faces", "encoding audio")


def collect_settings(steps, guidance, seed, face_index, length_mode, sampler_label, landmarks,
                     deepcache=True, audio_windows="seamless") -> GenerationSettings:
    """Widget values -> GenerationSettings. Values pass through as given (validation refuses bad ones with a
    message); only the UI's float-typed numbers become ints when they are whole."""
    return GenerationSettings(sampler=SAMPLER_LABELS.get(sampler_label, sampler_label),
                              num_inference_steps=_whole(steps), guidance_scale=guidance, seed=_whole(seed),
                              face_index=_whole(face_index), length_mode=length_mode or None,
                              landmarks=landmarks or "auto", deepcache=bool(deepcache),
                              audio_windows=audio_windows or "seamless")


def _whole(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


def lipsync_gpu_seconds(*args, **kwargs) -> int:
    """ZeroGPU time for one lipsync request; ``spaces.GPU`` calls it with the handler's own arguments (a second
    speaker doubles the generation: each face is generated for its own track)."""
    values = inspect.signature(DemoHandlers.lipsync).bind_partial(None, *args, **kwargs).arguments
    preset = PRESET_BY_LABEL.get(values.get("preset_label"), DEFAULT_PRESET)
    sampler = SAMPLER_LABELS.get(values.get("sampler_label"), "ddim")
    tracks = [values.get("audio") or values.get("video")] + ([values["second_speech"]]
                                                            if values.get("second_speech") else [])
    # A dialogue lasts as long as its longest track, and each face is generated.
    return max(gpu_seconds(track, preset, sampler, values.get("steps"), len(tracks)) for track in tracks)


def redo_gpu_seconds(base, start, end, seed=None, steps=None, sampler_label=SAME_SAMPLER, *_, **__) -> int:
    """ZeroGPU time for one redo request (the redo handler's own arguments): the span's frames."""
    base = base or {}
    try:
        frames = max(0.0, float(end) - float(start)) * MODEL_FPS
    except (TypeError, ValueError):  # the handler says what is wrong with the span
        frames = 0.0
    sampler = SAMPLER_LABELS.get(sampler_label, base.get("sampler", "ddim"))
    return frames_gpu_seconds(frames, base.get("preset", DEFAULT_PRESET), sampler, steps or base.get("steps"))


def redo_base(event, settings: GenerationSettings, preset: str) -> dict | None:
    """What "Redo a segment" needs of a finished job (the lipsync endpoint's last output, a State): its result,
    whose record lies beside it, the result's length (the span's bounds) and its settings. None for a stopped
    job or one that kept no record: nothing to redo."""
    if event.stage != "done" or not (record_dir(event.output) / "job.json").is_file():
        return None
    return {"job": str(event.output), "seconds": round(event.frames / MODEL_FPS, 2), "seed": settings.seed,
            "sampler": settings.sampler, "steps": settings.num_inference_steps, "preset": preset}


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def time_left(fraction: float, elapsed: float) -> float | None:
    """Seconds left at the pace so far; None before a quarter is done (too early to tell)."""
    return elapsed * (1 - fraction) / fraction if fraction >= 0.25 else None


def progress_line(label: str, fraction: float, elapsed: float, left: float | None = None) -> str:
    """"**Generating chunk 2 of 5** · 48% · 0:21 elapsed · about 0:23 left" (no ETA before generation starts).
    ``left``: the ETA to show (default: the pace so far); between events it counts down from the last one."""
    left = time_left(fraction, elapsed) if left is None else left
    eta = f" · about {_clock(max(left, 0.0))} left" if left is not None else ""
    return f"**{label}** · {fraction:.0%} · {_clock(elapsed)} elapsed{eta}"


_END = object()


def ticking(events: Iterator, every: float) -> Iterator:
    """``events`` pulled in a thread of their own; yields each event as it comes and None after every ``every``
    seconds without one, so that the status line's clock keeps running during a slow step. Closing this
    generator closes ``events`` once the step being computed ends (in the thread that runs them)."""
    box: queue.Queue = queue.Queue()
    quit = threading.Event()

    def pump():
        try:
            for event in events:
                box.put((event, None))
                if quit.is_set():
                    break
        except BaseException as exc:  # handed to the caller's thread, raised there
            box.put((None, exc))
        finally:
            events.close()
            box.put((_END, None))

    threading.Thread(target=pump, name="lipsync-job", daemon=True).start()
    try:
        while True:
            try:
                event, error = box.get(timeout=every)
            except queue.Empty:
                yield None
                continue
            if error is not None:
                raise error
            if event is _END:
                return
            yield event
    finally:
        quit.set()


def stage_label(event) -> str:
    """What is running now (a chunk event reports the chunk just finished)."""
    if event.stage == "generating" and event.chunk is not None:
        if event.chunk < event.num_chunks:
            return f"Generating chunk {event.chunk + 1} of {event.num_chunks}"
        return "Writing the video"
    return event.message[:1].upper() + event.message[1:]


def content_key(path: str | Path) -> str:
    """A file's identity by content. Gradio hands a preview back to the next event as a copy in its own cache
    (another path, same bytes), so the preview -> original map cannot be keyed by path."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def original_upload(video: str | None, sources: dict | None) -> str | None:
    """The upload behind what the video widget holds now: the original when it holds a browser preview (as the
    preview's path or as Gradio's cached copy of it), else the widget's own file."""
    if not video or not sources:
        return video
    if str(video) in sources:
        return sources[str(video)]
    try:
        return sources.get(content_key(video), video)
    except OSError:  # not a readable file: validation names the problem
        return video


def log_user_error(what: str, exc: LatentSyncError) -> None:
    """A user's mistake is one line in the server log (its message); tracebacks are for the server's faults."""
    log.warning("%s refused (%s): %s", what, type(exc).__name__, " ".join(str(exc).split()))


def user_error(exc: LatentSyncError) -> gr.Error:
    """The message box for a LatentSyncError outside a job (a download): logged as one line, no traceback."""
    log_user_error("download", exc)
    return gr.Error(as_sentence(user_message(exc)), duration=None, print_exception=False)


def form_note(exc: LatentSyncError, names: dict[str, str] | None = None) -> str:
    """A user mistake as the note under the consent box says it (the web's words, starting with a capital)."""
    if isinstance(exc, ConsentError):
        return CONSENT_NOTE  # its own text names API flags a web user has no use for
    return as_sentence(user_message(exc, names))


def speech_key(video: str | None, audio: str | None) -> str | None:
    """Which speech a transcript was made from: the video's content and the uploaded speech's (None: unreadable)."""
    try:
        return "|".join(content_key(path) if path else "" for path in (video, audio))
    except OSError:
        return None


def _cell(value) -> str:
    """A table cell as text (an emptied cell arrives as None or NaN)."""
    return "" if value is None or value != value else str(value)


def transcript_rows(script: DubScript) -> list[list]:
    """The table's rows: start, end, original, translation."""
    return [[round(s.start, 2), round(s.end, 2), s.source, s.text] for s in script.segments]


@dataclass(frozen=True)
class LipSyncForm:
    """One lipsync request's widget values, in the endpoint's API order."""

    video: str | None
    audio: str | None
    preset_label: str
    sampler_label: str
    steps: float | None
    guidance: float
    seed: float | None
    face_index: float | None
    length_mode: str | None
    voice_label: str = VOICE_OFF
    script: str | None = None
    language: str | None = None
    voice_reference: str | None = None
    landmarks: str = "auto"
    sources: dict | None = None  # browser preview (its content_key) -> the uploaded original
    consent: bool = False
    deepcache: bool = True
    audio_windows: str = "seamless"
    listed_faces: dict | None = None  # the face thumbnails shown for an upload: {"video": content_key, "faces": [...]}
    second_face: float | None = None  # a dialogue: the second speaker's face index ...
    second_speech: str | None = None  # ... and speech (the first speaker is face_index with the Speech upload)
    target_language: str | None = None  # translate: the language to dub into
    dub_table: list | None = None  # translate: the transcript table as the user edited it (rows of DUB_HEADERS)
    dub_script: dict | None = None  # translate: what the table shows, as transcribed: {"speech": key, "script": json}
    subtitles: str = "soft"  # translate: a SUBTITLE_LABELS label (or its value)
    keep_room: bool = False  # any voice mode: the new speech over the video's own sound, ducked

    @cached_property
    def source(self) -> str | None:
        """The uploaded video: the original behind an H.264 browser preview (found once per request: it can
        hash the whole upload)."""
        return original_upload(self.video, self.sources)

    def shown_faces(self) -> tuple[int, ...] | None:
        """The face indices the thumbnails showed for this very video (None: none were shown for it)."""
        listed = self.listed_faces or {}
        if not listed.get("faces") or not self.source:
            return None
        try:
            same_video = listed.get("video") == content_key(self.source)
        except OSError:  # not a readable file: validation names the problem
            return None
        return tuple(listed["faces"]) if same_video else None

    def speech(self) -> list[tuple] | None:
        """A dialogue's (face index, speech) pairs: the chosen face with the Speech upload, the second speaker's
        face with theirs; None without a second speaker's speech (a one-face job)."""
        if not self.second_speech:
            return None
        first = int(self.face_index) if self.face_index is not None else 0
        second = int(self.second_face) if self.second_face is not None else None
        return [(first, self.audio), (second, self.second_speech)]

    def voice_request(self) -> VoiceRequest:
        """The voice widgets as the service's VoiceRequest. Translate mode speaks the table's edited translations;
        with no table yet, the job transcribes and translates by itself."""
        mode = VOICE_LABELS.get(self.voice_label, self.voice_label)
        if mode != "translate":
            return VoiceRequest(mode, self.script or None, self.language or None, self.voice_reference,
                                keep_room=bool(self.keep_room))
        return VoiceRequest(mode, None, self.language or None, self.voice_reference,
                            target_language=self.target_language or None, transcript=self.edited_transcript(),
                            subtitles=SUBTITLE_LABELS.get(self.subtitles, self.subtitles or "soft"),
                            keep_room=bool(self.keep_room))

    def edited_transcript(self) -> DubScript | None:
        """The transcript the table showed, with the translation column as edited; times and original words stay
        as transcribed whatever the table says. InputError when the table was made for other speech or another
        target language (the edits would be spoken over the wrong words)."""
        held = self.dub_script
        if not held:
            return None
        script = script_from_json(held["script"])
        if held.get("speech") != speech_key(self.source, self.audio):
            raise InputError("the transcript table was made for another video or speech: press “Transcribe & "
                             "translate” again for this one.")
        target = xtts_language(self.target_language) if self.target_language else script.target_language
        if target != script.target_language:
            raise InputError(f"the table is translated into {script.target_language!r}, but the target language is "
                             f"now {target!r}: press “Transcribe & translate” again to translate into it.")
        rows = self.dub_table or []
        return script.with_texts([_cell(row[DUB_EDITABLE_COLUMN]) if len(row) > DUB_EDITABLE_COLUMN else ""
                                  for row in rows])

    def display_names(self) -> dict[str, str]:
        """Server path -> the file name the user uploaded, for error messages."""
        names = {str(p): Path(p).name for p in (self.source, self.audio, self.voice_reference, self.second_speech)
                 if p}
        if self.video and self.source != self.video:
            names[str(self.video)] = Path(self.source).name
        return names


class DemoHandlers:
    """Every handler the web app wires to a widget, around one service.

    ``lipsync`` and ``score_result`` run on the accelerator: on ZeroGPU each instance wraps its bound methods in
    ``spaces.GPU``, so that ``self`` (and the service's models) never travel in ZeroGPU's per-call arguments.
    """

    preview_max_height = 720  # browser previews of phone clips: light to load, never what the job reads
    tick_seconds = 1.0  # the status line's clock is redrawn this often while a step runs

    def __init__(self, service: LipSyncService, allow_download: bool = True):
        self.service = service
        self.allow_download = allow_download
        self.stops: dict[str, threading.Event] = {}  # session -> the running job's stop switch
        self.stop_early: set[str] = set()  # sessions that pressed Stop while their job was still queued
        # On ZeroGPU these two borrow the accelerator per call (the wrapped methods keep their names, which
        # Gradio uses for API names); off ZeroGPU on_gpu returns them unchanged.
        self.lipsync = on_gpu(self.lipsync, duration=lipsync_gpu_seconds)
        self.score_result = on_gpu(self.score_result)
        self.redo = on_gpu(self.redo, duration=redo_gpu_seconds)
        self.transcribe = on_gpu(self.transcribe)  # Whisper and the translation model share the accelerator

    # --- model weights, sampler and voice widgets -------------------------------------------------------------
    def weights_note(self, preset_label: str):
        """(note, download button, run button): what is missing for the preset, and Lip-sync off until it is."""
        missing = self.service.missing_files(PRESET_BY_LABEL[preset_label])
        if not missing:
            return gr.update(value="", visible=False), gr.update(visible=False), gr.update(
                interactive=True, value="Lip-sync")
        listed = ", ".join(f"`{path.name}`" for path in missing)
        how = ("Download them (a few GB) with the button below." if self.allow_download else
               "The host adds them (on Hugging Face: `preload_from_hub` in the Space's README).")
        note = (f"**Lip-sync is off: the model weights for {preset_label} are missing** ({listed}). {how}\n\n"
                f"{TINY_WEIGHTS_NOTE}")
        return (gr.update(value=note, visible=True), gr.update(visible=self.allow_download),
                gr.update(interactive=False, value="Lip-sync (model weights missing)"))

    def download(self, preset_label: str, progress=gr.Progress(track_tqdm=True)):
        if not self.allow_download:
            raise gr.Error("Downloads are turned off on this server; the host adds the model weights.")
        try:
            self.service.download(PRESET_BY_LABEL[preset_label])
        except LatentSyncError as exc:
            raise user_error(exc) from exc
        return self.weights_note(preset_label)

    def sampler_widgets(self, preset_label: str, sampler_label: str):
        """LCM is offered only when the preset has a distilled student; steps and guidance follow the sampler."""
        lcm_ready = self.service.has_lcm(PRESET_BY_LABEL[preset_label])
        name = SAMPLER_LABELS[sampler_label]
        name = name if lcm_ready or not SAMPLERS[name].needs_student else "ddim"
        spec = SAMPLERS[name]
        choices = [label for label, key in SAMPLER_LABELS.items() if lcm_ready or not SAMPLERS[key].needs_student]
        info = None if lcm_ready else "4-step LCM needs a distilled student in the checkpoints' lcm/ folder."
        return (gr.update(choices=choices, value=LABEL_OF_SAMPLER[name], info=info),
                gr.update(value=spec.default_steps, minimum=spec.min_steps, maximum=min(spec.max_steps, 50)),
                gr.update(interactive=spec.uses_guidance,
                          info=GUIDANCE_INFO if spec.uses_guidance else GUIDANCE_BUILT_IN.format(name.upper())))

    def voice_widgets(self, voice_label: str):
        """Script box, voice options and output only for a voice mode; what is missing shown before running."""
        mode = VOICE_LABELS[voice_label]
        missing = self.service.voice.missing_files(mode) if mode != "off" else []
        folders = sorted({path.parent.name for path in missing})
        size = "about 2 GB, and 2 GB more for the translation model" if mode == "translate" else "about 2 GB"
        note = (f"**Voice models missing** ({', '.join(folders)}): accept the licence and download them below "
                f"({size}) before running." if missing else "")
        can_download = bool(missing) and self.allow_download
        return (gr.update(visible=mode == "script"), gr.update(visible=mode != "off"),
                gr.update(value=note, visible=bool(missing)), gr.update(visible=can_download),
                gr.update(visible=can_download), gr.update(visible=mode != "off"))

    def download_voice(self, voice_label: str, agreed: bool, progress=gr.Progress(track_tqdm=True)):
        if not agreed:
            keep = gr.update()
            return keep, gr.update(value="**Tick the box to accept the Coqui Public Model License** "
                                   "(non-commercial) first.", visible=True), keep, keep
        try:
            self.service.voice.download(agree_to_cpml=True, mode=VOICE_LABELS[voice_label])
        except LatentSyncError as exc:
            raise user_error(exc) from exc
        return ("Voice models are ready.", *self.voice_widgets(voice_label)[2:5])

    # --- translate mode: the editable transcript -----------------------------------------------------------------
    @staticmethod
    def dub_widgets(voice_label: str):
        """The target language, transcript table and subtitle choice: shown in translate mode only."""
        return gr.update(visible=VOICE_LABELS.get(voice_label) == "translate")

    @staticmethod
    def clear_transcript():
        """(table, transcript, note) emptied: a new video or target language needs a new transcript."""
        return [], None, gr.update(value="", visible=False)

    def transcribe(self, video, audio=None, target_language=None, language=None, sources=None):
        # The transcribe endpoint: (table rows, the transcript behind them, note). What the video (or the uploaded
        # speech) says, as timed segments translated into the target language, for the user to edit before
        # generating. A user mistake (no target language, no speech, missing models) is the note, as in a job.
        source = original_upload(video, sources)
        names = {str(path): Path(path).name for path in (source, audio) if path}
        try:
            script = self.service.transcribe_translate(source, target_language, audio=audio or None,
                                                       language=language or None)
        except LatentSyncError as exc:
            log_user_error("transcription", exc)
            return *self.clear_transcript()[:2], gr.update(value=form_note(exc, names), visible=True)
        except Exception as exc:  # keep serving; the log has the trace
            log.exception("transcription failed")
            raise gr.Error(f"Something went wrong on the server ({type(exc).__name__}). Please try again.") from exc
        count = len(script.segments)
        note = (f"{count} segment{'s' if count > 1 else ''}, {script.source_language or '?'} → "
                f"{script.target_language}. "
                "Edit the translation column (double-click a cell, Enter to keep it), then press Lip-sync. "
                "Generating again after an edit speaks only the edited rows again.")
        return (transcript_rows(script), {"speech": speech_key(source, audio), "script": script.to_json()},
                gr.update(value=note, visible=True))

    def preview_notice(self, video):
        """Said under the video at once, while ``show_upload`` makes the preview behind its spinner."""
        try:
            making = bool(video) and needs_preview(video)
        except LatentSyncError:  # show_upload says what is wrong with it
            making = False
        return gr.update(value=PREVIEW_NOTE, visible=making)

    def show_upload(self, video, sources: dict | None, request: gr.Request):
        """Phone clips (HEVC) do not play in Chromium: show an H.264 copy, remember the original for the job.

        The map and the widget change in one event, and the map is keyed by the preview's content, so a job
        reads the original whether it starts before the preview replaced the upload or after (from Gradio's
        cached copy of the preview). An unreadable video is taken out of the widget (its player could only show
        "NaN:NaN"), and a message says why."""
        sources, no_notice = dict(sources or {}), gr.update(value="", visible=False)
        if not video:
            return gr.update(), sources, no_notice
        try:
            if not needs_preview(video):
                return gr.update(), sources, no_notice
            preview = browser_preview(video, self.service.new_output_path(name=Path(video).stem),
                                      max_height=self.preview_max_height)
        except LatentSyncError as exc:  # a message, not an error badge on the video
            log_user_error("browser preview", exc)
            gr.Warning(form_note(exc, {video: Path(video).name}), duration=None)
            return None, sources, no_notice
        sources[str(preview)] = sources[content_key(preview)] = video
        return str(preview), sources, no_notice

    # --- choosing the face: thumbnails of the faces in the first seconds ---------------------------------------
    def list_faces(self, video, sources: dict | None, preset_label: str, landmarks: str):
        """(gallery, listed faces, face note) for an upload: a thumbnail per face of its first seconds, captioned
        "face N · share", numbered as the job numbers faces. Nothing shown for no video, an unreadable one (the
        job says what is wrong) or one without faces in those seconds (the job searches the whole clip)."""
        source = original_upload(video, sources)
        hidden = self.clear_faces()
        if not source:
            return hidden
        preset = PRESET_BY_LABEL.get(preset_label, preset_label)
        try:
            faces = self.service.list_faces(source, preset, landmarks or "auto")
            key = content_key(source)
        except (LatentSyncError, OSError) as exc:
            log.info("no face listing for %s: %s", Path(source).name, exc)
            return hidden
        if not faces:
            return hidden
        gallery = [(face.thumbnail, face.caption()) for face in faces]
        note = (f"{len(faces)} faces found: click the one to lip-sync (now face {faces[0].index}, the largest)."
                if len(faces) > 1 else "One face found: it is the one lip-synced.")
        return (gr.update(value=gallery, visible=True, selected_index=None),
                {"video": key, "faces": [face.index for face in faces]}, gr.update(value=note, visible=True))

    @staticmethod
    def clear_faces():
        """(gallery, listed faces, face note) with no video: nothing shown, nothing to check an index against."""
        return gr.update(value=None, visible=False), None, gr.update(value="", visible=False)

    def pick_face(self, listed: dict | None, evt: gr.SelectData):
        """A click on a thumbnail: (face index field, face note) set to that face."""
        faces = (listed or {}).get("faces") or []
        if not 0 <= evt.index < len(faces):
            return gr.update(), gr.update()
        index = faces[evt.index]
        return index, gr.update(value=f"Lip-syncing face {index}.", visible=True)

    # --- the job: start, stop, stream ---------------------------------------------------------------------------
    def arm(self, request: gr.Request):
        """On click, before the queued job: forget a Stop pressed earlier."""
        self.stop_early.discard(request.session_hash)

    def request_stop(self, request: gr.Request):
        switch = self.stops.get(request.session_hash)
        if switch is None:
            self.stop_early.add(request.session_hash)
            return "**Stopped** before it started."
        switch.set()
        return "**Stopping** after the chunk being generated…"

    def start_job(self, form: LipSyncForm, stop: threading.Event):
        """The one place where a request's widget values become a service call: the prepared request (every
        check, InputError for bad input before anything runs), then its run. Returns (the job's event generator,
        its settings, the preset name)."""
        preset = PRESET_BY_LABEL.get(form.preset_label, form.preset_label)
        settings = collect_settings(form.steps, form.guidance, form.seed, form.face_index, form.length_mode,
                                    form.sampler_label, form.landmarks, form.deepcache, form.audio_windows)
        voice = form.voice_request()
        stem = Path(form.source).stem if form.source else "video"
        out = self.service.new_output_path(name=f"{stem}_lipsync")
        compare = out.with_name(f"{stem}_side_by_side.mp4")
        speech = form.speech()  # a dialogue: the Speech upload is the first speaker's track, not the one audio
        request = self.service.prepare(form.source, None if speech else form.audio or None, out, preset, settings,
                                       voice, compare=compare, consent=form.consent is True,
                                       shown_faces=form.shown_faces(), speech=speech)
        return self.service.run(request, stop), settings, preset

    def lipsync(self, video, audio, preset_label, sampler_label, steps, guidance, seed, face_index, length_mode,
                 voice_label=VOICE_OFF, script=None, language=None, voice_reference=None, landmarks="auto",
                 sources=None, consent=False, deepcache=True, audio_windows="seamless", listed_faces=None,
                 second_face=None, second_speech=None, target_language=None, dub_table=None, dub_script=None,
                 subtitles=next(iter(SUBTITLE_LABELS)), keep_room=False, request: gr.Request = None,
                 progress=gr.Progress()):
        # The lipsync endpoint: streams (status, preview, compare, result, download, new speech, note, subtitles,
        # redo base) updates; the redo base (a State, not part of the API's answer) is the finished job that "Redo
        # a segment" works on. A user mistake is the note by the consent box and leaves the results alone (no
        # error badges); only real faults raise. (No docstring: Gradio would publish it as the endpoint's API
        # description.)
        form = LipSyncForm(video, audio, preset_label, sampler_label, steps, guidance, seed, face_index,
                           length_mode, voice_label, script, language, voice_reference, landmarks, sources,
                           consent, deepcache, audio_windows, listed_faces, second_face, second_speech,
                           target_language, dub_table, dub_script, subtitles, keep_room)
        keep, no_note = gr.update(), gr.update(value="", visible=False)
        session = getattr(request, "session_hash", None) or "api"
        stop = self.stops[session] = threading.Event()
        if session in self.stop_early:
            self.stop_early.discard(session)
            yield "**Stopped** before it started.", keep, keep, keep, keep, keep, no_note, keep, keep
            return
        try:
            job, settings, preset = self.start_job(form, stop)
            for *update, srt, base in self._follow(ticking(job, self.tick_seconds), settings, preset, stop,
                                                   progress):
                yield *update, no_note, srt, base
        except LatentSyncError as exc:
            log_user_error("lip-sync", exc)
            note = form_note(exc, form.display_names())
            yield "Results appear here.", keep, keep, keep, keep, keep, gr.update(value=note, visible=True), keep, keep
        except Exception as exc:  # keep serving; the user sees that it broke, the log has the trace
            log.exception("lip-sync job failed")
            raise gr.Error(f"Something went wrong on the server ({type(exc).__name__}). Please try again; "
                           "if it happens again, try another clip.") from exc
        finally:
            if self.stops.get(session) is stop:
                del self.stops[session]

    def _follow(self, job, settings: GenerationSettings, preset: str, stop: threading.Event, progress):
        """A running job's events as the app's updates: a status line with progress and ETA, each chunk's preview,
        the new speech when a voice mode made it, and the videos (and a dub's subtitles) at the end (done or
        stopped) with the redo base (``redo_base``)."""
        keep = gr.update()
        started = time.monotonic()
        warning = ""  # told before the job (silent speech), kept under the status line while it runs
        label, fraction, left, last_event = "Starting", 0.0, None, started
        for event in job:
            now = time.monotonic()
            elapsed = now - started
            if event is None:  # a slow step (ticking's heartbeat): the clock runs on, the ETA counts down
                progress(fraction, desc=label)
                eta = None if left is None else left - (now - last_event)
                yield progress_line(label, fraction, elapsed, eta) + warning, *(keep,) * 7
                continue
            if event.stage in ("done", "stopped"):
                summary = run_summary(event.frames, elapsed, settings, preset, self.service.device)
                head = "**Done**" if event.stage == "done" else f"**Stopped** after chunk {event.chunk} of " \
                    f"{event.num_chunks}; the finished part is below"
                notes = f"\n\n{event.notes}" if event.notes else ""  # what was looped, cut, padded or did not fit
                srt = gr.update(value=str(event.subtitles), visible=True) if event.subtitles else \
                    gr.update(value=None, visible=False)
                yield f"{head} · {summary}{notes}", keep, str(event.compare), str(event.output), \
                    str(event.output), keep, srt, redo_base(event, settings, preset)
                return
            warning = f"\n\n{event.notes}" if event.notes else warning
            if stop.is_set() and event.stage in EARLY_STAGES:
                job.close()
                yield "**Stopped** before the first chunk was generated.", *(keep,) * 7
                return
            label, fraction, last_event = stage_label(event), event.fraction, now
            left = time_left(fraction, elapsed)
            progress(fraction, desc=label)
            preview = event.preview if event.preview is not None else keep
            speech = str(event.audio) if event.audio is not None else keep
            yield progress_line(label, fraction, elapsed, left) + warning, preview, keep, keep, keep, speech, keep, keep

    # --- redo a segment of the finished result -----------------------------------------------------------------
    def redo_controls(self, base: dict | None):
        """After a job: (redo group, start, end, seed, redo status, redone video, its download, redo note). The
        group shows for a finished job with a record, its span bounded by the result's length; the seed
        defaults to the job's plus one, so that a plain click changes the span. An earlier redo is cleared."""
        hide_note = gr.update(value="", visible=False)
        if not base:
            return gr.update(visible=False), *(gr.update(),) * 3, REDO_IDLE, None, None, hide_note
        seconds = base["seconds"]
        return (gr.update(visible=True), gr.update(value=0.0, minimum=0, maximum=seconds),
                gr.update(value=min(1.0, seconds), minimum=0, maximum=seconds),
                gr.update(value=int(base["seed"]) + 1), f"{REDO_IDLE} The result lasts {seconds:.2f} s.", None, None,
                hide_note)

    def start_redo(self, base: dict | None, start, end, seed, steps, sampler_label):
        """The one place where the redo widgets become a ``service.redo`` call on the page's finished job: every
        check (InputError for a bad span, a gone record, bad settings) before anything runs. Returns (the redo's
        event generator, the settings' description for the status line)."""
        if not base:
            raise InputError(NO_JOB_TO_REDO)
        job = Path(base["job"])
        out = self.service.new_output_path(name=f"{job.stem}_redo")  # first: it removes results past their hour
        try:
            if not job.is_file():
                raise InputError(RESULT_GONE)
            if start is None or end is None:
                raise InputError("give the segment's start and end in seconds (the result lasts "
                                 f"{base['seconds']:.2f} s)")
            same = sampler_label in (None, "", SAME_SAMPLER)
            sampler = None if same else SAMPLER_LABELS.get(sampler_label, sampler_label)
            seed, steps = _whole(seed), _whole(steps) or None  # the page sends 0 for the job's (an empty box too)
            events = self.service.redo(job, start, end, seed=seed, steps=steps, sampler=sampler, out=out)
        except BaseException:
            shutil.rmtree(out.parent, ignore_errors=True)  # the refused redo's own fresh folder
            raise
        name = (sampler or base["sampler"]).upper()
        count = steps or (SAMPLERS[sampler].default_steps if sampler in SAMPLERS else base["steps"])
        return events, f"seconds {float(start):g}-{float(end):g} with seed {base['seed'] if seed is None else seed}, " \
            f"{name} {count} steps"

    def redo(self, base, start, end, seed, steps=0, sampler_label=SAME_SAMPLER, request: gr.Request = None,
             progress=gr.Progress()):
        # The redo endpoint (on the page's last finished job, a State): streams (status, redone video, its
        # download, note) updates. The first result stays where it is (player and download). A user mistake is
        # the note under the Redo button. (No docstring: Gradio would publish it as the endpoint's description.)
        keep, no_note = gr.update(), gr.update(value="", visible=False)
        try:
            events, described = self.start_redo(base, start, end, seed, steps, sampler_label)
            started, label, fraction = time.monotonic(), "Starting", 0.0
            for event in ticking(events, self.tick_seconds):
                elapsed = time.monotonic() - started
                if event is not None and event.stage == "done":
                    yield (f"**Done** · redid {described} in {elapsed:.1f} s. Every whole second of the video "
                           "outside the span is the first result's, unchanged; the first result is still above.",
                           str(event.output), str(event.output), no_note)
                    return
                if event is not None:
                    label, fraction = stage_label(event), event.fraction
                progress(fraction, desc=label)
                yield progress_line(label, fraction, elapsed), keep, keep, no_note
        except LatentSyncError as exc:
            log_user_error("redo", exc)
            yield REDO_IDLE, keep, keep, gr.update(value=form_note(exc), visible=True)
        except Exception as exc:  # keep serving; the user sees that it broke, the log has the trace
            log.exception("redo failed")
            raise gr.Error(f"Something went wrong on the server ({type(exc).__name__}). Please try again.") from exc

    # --- lip-sync score (an option under Advanced) ---------------------------------------------------------------
    def score_option(self, wanted: bool, progress=gr.Progress(track_tqdm=True)):
        """(the Score box, its note): asking for a score is what fetches the scoring weights (about 150 MB, once);
        where they cannot be had the box is unticked and the note says why."""
        missing = self.service.metric_files_missing() if wanted else []
        if not missing:
            return gr.update(), gr.update(value="", visible=False)
        needs_syncnet = any(path.name == "syncnet_v2.model" for path in missing)
        if not self.allow_download:  # S3FD alone missing: faces come from the landmark detector, still a score
            return (gr.update(value=False), gr.update(value=SCORE_WEIGHTS_GONE, visible=True)) if needs_syncnet \
                else (gr.update(), gr.update(value="", visible=False))
        try:
            self.service.download_metric_weights()
        except LatentSyncError as exc:
            log_user_error("scoring weights download", exc)
            return gr.update(value=False), gr.update(value=f"**No lip-sync score:** {form_note(exc)}", visible=True)
        return gr.update(), gr.update(value="Scoring weights downloaded: each finished job now shows its score.",
                                      visible=True)

    def score_result(self, status, video, audio, result, sources=None, wanted=False):
        """After a finished job, when asked for: "Lip sync: confidence X (original clip: Y), offset Z frames"
        (SyncNet, as the paper). Nothing for a refused or stopped job, nor when the score was not asked for."""
        if not (wanted and result and str(status or "").startswith("**Done**")):
            return gr.update(value="", visible=False)
        if any(path.name == "syncnet_v2.model" for path in self.service.metric_files_missing()):
            return gr.update(value=SCORE_WEIGHTS_GONE, visible=True)
        try:
            return gr.update(value=self.service.score_job(result, original_upload(video, sources), audio or None),
                             visible=True)
        except LatentSyncError as exc:
            return gr.update(value=f"Lip sync not scored: {user_message(exc)}", visible=True)
        except Exception as exc:  # the video is already there: a failed score must not look like a failed job
            log.exception("lip-sync scoring failed")
            return gr.update(value=f"Lip sync not scored ({type(exc).__name__}).", visible=True)
