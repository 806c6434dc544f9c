"""The audio windows setting (``audio.windows``: seamless by default, official on request) reaches every front
end and every consumer of Whisper features: the CLI, REST (tests/test_rest_api.py), batch rows, the app's
handlers, the job's audio encoder, the provenance sidecar and training caches. The features themselves are
tested in tests/test_audio_features.py."""

import json

import pytest
import torch

from latentsync_demo.app_handlers import collect_settings
from latentsync_demo.batch import BatchRow, run_row
from latentsync_demo.batch import build_parser as batch_parser
from latentsync_demo.cli import build_parser
from latentsync_demo.errors import InputError
from latentsync_demo.settings import GenerationSettings
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip
from latentsync_demo.training.data import WindowDataset, write_clip
from latentsync_demo.training.train_unet import parse_args

RUN = ["--video", "v.mp4", "--audio", "a.wav", "--out", "o.mp4"]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("windows_media")
    return {"video": make_talking_head_clip(root / "face.mp4", seconds=0.4, fps=25, size=(128, 128)),
            "speech": make_speech_wav(root / "speech.wav", seconds=0.4)}


def test_cli_app_and_batch_take_the_setting(capsys):
    assert GenerationSettings().audio_windows == "seamless"
    assert build_parser().parse_args(RUN).audio_windows == "seamless"
    assert build_parser().parse_args([*RUN, "--audio-windows", "official"]).audio_windows == "official"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*RUN, "--audio-windows", "centred"])
    err = capsys.readouterr().err
    assert "--audio-windows: invalid choice: 'centred'" in err and "seamless" in err and "official" in err
    app = collect_settings(20.0, 1.5, 1247.0, 0.0, "pingpong", "DDIM (quality)", "auto", True, "official")
    assert app.audio_windows == "official" and collect_settings(20, 1.5, 1, 0, "", "ddim", None).audio_windows \
        == "seamless"


class _RecordingService:
    """Just enough of LipSyncService for ``run_row``: records the settings a row asks for, then refuses it."""

    def __init__(self):
        self.settings = []

    def prepare(self, video, audio, out, preset, settings, voice, consent, **request):  # speech=, ... too
        self.settings.append(settings)
        raise InputError("recorded")


def test_a_batch_row_or_the_command_line_sets_the_mode(tmp_path):
    service = _RecordingService()
    defaults = batch_parser().parse_args(["m.csv", "--out", str(tmp_path), "--audio-windows", "official"])
    row = BatchRow("r", tmp_path / "v.mp4", tmp_path / "a.wav", None, None, None, {})
    assert run_row(service, row, tmp_path, defaults)["error"] == "recorded"
    own = BatchRow("s", tmp_path / "v.mp4", tmp_path / "a.wav", None, None, None, {"audio_windows": "seamless"})
    run_row(service, own, tmp_path, defaults)
    assert [s.audio_windows for s in service.settings] == ["official", "seamless"]


def test_an_unknown_mode_is_refused_before_any_model_loads(tiny_service, media, tmp_path):
    loaded = dict(tiny_service._models)
    with pytest.raises(InputError, match="unknown audio windows 'centred'; choose one of seamless, official"):
        tiny_service.prepare(media["video"], media["speech"], tmp_path / "out.mp4", audio_windows="centred",
                             consent=True)
    assert tiny_service._models == loaded


def test_the_job_encodes_with_the_chosen_mode_and_the_sidecar_records_it(tiny_service, media, tmp_path):
    encoder = tiny_service.models().audio_encoder
    calls = []

    def recording_encode(waveform, **kwargs):
        calls.append(kwargs)
        return type(encoder).encode(encoder, waveform, **kwargs)

    encoder.encode = recording_encode
    try:
        events = list(tiny_service.lipsync(media["video"], media["speech"], tmp_path / "out.mp4", consent=True,
                                           num_inference_steps=1, audio_windows="official"))
    finally:
        del encoder.encode
    assert calls == [{"windows": "official"}]
    sidecar = json.loads(events[-1].manifest.read_text())
    action = sidecar["assertions"][0]["data"]["actions"][0]
    assert action["parameters"]["settings"]["audio_windows"] == "official"


def _clip(folder, name, **metadata):
    write_clip(folder / name, torch.zeros(16, 3, 8, 8, dtype=torch.uint8), torch.zeros(16, 50, 4), **metadata)


def test_a_training_cache_records_its_mode_and_never_mixes_two(tmp_path):
    _clip(tmp_path / "old", "a.safetensors")  # cached before the modes: the official windows were the only ones
    assert WindowDataset(tmp_path / "old").audio_windows == "official"
    _clip(tmp_path / "new", "a.safetensors", audio_windows="seamless")
    assert WindowDataset(tmp_path / "new").audio_windows == "seamless"
    _clip(tmp_path / "new", "b.safetensors", audio_windows="official")
    with pytest.raises(InputError, match=r"mixes audio windows modes \['official', 'seamless'\]"):
        WindowDataset(tmp_path / "new")
    # The trainer's flag, for the cache --finetune makes (a --cache keeps the mode it was made with).
    assert parse_args(["--output", "o", "--audio-windows", "official"]).audio_windows == "official"
    assert parse_args(["--output", "o"]).audio_windows == "seamless"
