"""SyncNets and the lip-sync metric: official layouts, reference fixtures, and a metric that can fail.

The reference vectors (../shared/reference or $LATENTSYNC_REFERENCE_DIR, through the `reference_dir` fixture;
their README section 5) come from the official implementation; tests that need them skip when they are absent. The metric tests train a narrow SyncNet v2 on synthetic in-sync
"mouths" in the test itself, so a wrong window alignment, distance or summary gives wrong scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentsync_demo.errors import CheckpointError, InputError
from latentsync_demo.eval.quality import frame_fidelity, keep_mask
from latentsync_demo.eval.sync import (audio_features, evaluate_track, lip_features, mfcc, num_windows,
                                       offset_distances, summarize)
from latentsync_demo.models.s3fd import S3FDNet, anchors, decode
from latentsync_demo.models.stable_syncnet import StableSyncNet, load_stable_syncnet, stack_frames, sync_loss
from latentsync_demo.models.syncnet_v2 import SyncNetV2, load_syncnet_v2

def _layout(model: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["syncnet_16_pixel_attn", "syncnet_16_pixel", "syncnet_16_latent"])
def test_stable_syncnet_layout_matches_official(reference_dir, name):
    entry = json.loads((reference_dir / "syncnet_stable_manifests.json").read_text())[name]
    with torch.device("meta"):
        model = StableSyncNet.from_model_config(entry["model_config"])
    assert list(_layout(model).items()) == list(entry["state_dict"].items())  # keys, shapes and order
    assert sum(p.numel() for p in model.parameters()) == entry["total_parameter_count"]


def test_eval_syncnet_and_s3fd_layouts_match_official(reference_dir):
    manifests = json.loads((reference_dir / "syncnet_eval_manifests.json").read_text())
    with torch.device("meta"):
        syncnet, s3fd = SyncNetV2(), S3FDNet()
    for model, entry in ((syncnet, manifests["syncnet_eval_S"]), (s3fd, manifests["s3fd"])):
        assert list(_layout(model).items()) == list(entry["state_dict"].items())
        assert sum(p.numel() for p in model.parameters()) == entry["total_parameter_count"]
    assert sorted(k for k, v in syncnet.state_dict().items() if k in dict(syncnet.named_buffers())) == sorted(
        manifests["syncnet_eval_S"]["buffer_keys"])


@pytest.fixture(scope="module")
def stable_tiny(reference_dir, tmp_path_factory):
    from safetensors.torch import load_file

    config = json.loads((reference_dir / "syncnet_stable_tiny_config.json").read_text())
    path = tmp_path_factory.mktemp("syncnet") / "stable_syncnet.pt"
    torch.save({"state_dict": load_file(str(reference_dir / "syncnet_stable_tiny_state_dict.safetensors"))}, path)
    return path, config, torch.load(reference_dir / "syncnet_stable_tiny_io.pt", weights_only=True)


def test_stable_syncnet_tiny_fixture(stable_tiny):
    path, config, io = stable_tiny
    faces = (io["image_lower_u8"].float() - 128) / 128  # (32, 128, 256, 3): lower halves already
    visual = faces.permute(0, 3, 1, 2).reshape(2, 16, 3, 128, 256)
    # float32 on both samples, float64 on one. Bounds at about 3-5x the measured max |diff| (2 CPU threads,
    # `python bench/bench_conformance.py --only syncnet`): float32 embeddings 1.6e-5, loss 5.7e-6; float64 embeddings 3.1e-16.
    for dtype, suffix, atol, batch in ((torch.float32, "", 5e-5, 2), (torch.float64, "_fp64", 1.5e-15, 1)):
        model = load_stable_syncnet(path, config, dtype=dtype)
        with torch.no_grad():
            v, a = model(stack_frames(visual[:batch].to(dtype), lower_half=False),
                         io["audio_sequences"][:batch].to(dtype))
        torch.testing.assert_close(v, io["vision_embeds" + suffix][:batch].to(dtype), atol=atol, rtol=0)
        torch.testing.assert_close(a, io["audio_embeds" + suffix][:batch].to(dtype), atol=atol, rtol=0)
        if dtype == torch.float32:
            torch.testing.assert_close(sync_loss(v, a), io["cosine_loss"], atol=1e-5, rtol=0)


def test_stable_syncnet_loading_reports_every_bad_key(stable_tiny, tmp_path):
    path, config, _ = stable_tiny
    state = torch.load(path, weights_only=True)["state_dict"]
    state.pop("audio_encoder.conv_in.bias")
    state["visual_encoder.extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": state}, bad)
    with pytest.raises(CheckpointError) as err:
        load_stable_syncnet(bad, config)
    assert "audio_encoder.conv_in.bias" in str(err.value) and "visual_encoder.extra.weight" in str(err.value)
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_stable_syncnet(path)  # the tiny weights against the released (full-width) config


def test_eval_syncnet_fixture(reference_dir, tmp_path):
    from safetensors.torch import load_file

    io = torch.load(reference_dir / "syncnet_eval_io.pt", weights_only=True)
    model_file = tmp_path / "syncnet_v2.model"  # the official format: a plain state dict
    torch.save(load_file(str(reference_dir / "syncnet_eval_state_dict.safetensors")), model_file)
    model = load_syncnet_v2(model_file)
    audio = io["audio_int16"].numpy()
    # Bounds from `python bench/bench_conformance.py --only syncnet`: MFCC measured 6.4e-14 max |diff|, features 2.7e-5 (lip) and 2.1e-5
    # (audio), each bound about 5x that; distances, their means, minimum and confidence from the stored features
    # measured identical, so they must stay identical.
    np.testing.assert_allclose(mfcc(audio), io["mfcc"].numpy(), atol=3e-13, rtol=0)
    # Features of the first 6 windows (each window only sees its own 5 frames and 20 MFCC columns).
    frames, n = io["frames_bgr"].numpy()[:11], 6
    torch.testing.assert_close(lip_features(model, frames, n), io["im_feat"][:n], atol=1.3e-4, rtol=0)
    torch.testing.assert_close(audio_features(model, audio[:11 * 640], n), io["cc_feat"][:n], atol=1e-4, rtol=0)
    assert num_windows(len(io["frames_bgr"]), len(audio)) == 25
    dists = offset_distances(io["im_feat"], io["cc_feat"], io["vshift"])
    torch.testing.assert_close(dists, io["dists"], atol=0, rtol=0)
    result = summarize(dists, io["vshift"])
    np.testing.assert_array_equal(result.mean_dists, io["mean_dists"].numpy())
    assert result.offset == io["av_offset"]
    assert result.min_dist == float(io["min_dist"])
    assert result.confidence == float(io["conf"])


def test_s3fd_decodes_zero_offsets_to_its_anchors():
    priors = anchors((64, 128), [(16, 32), (8, 16)])
    assert priors.shape == (16 * 32 + 8 * 16, 4)
    np.testing.assert_allclose(priors[0].numpy(), [2 / 128, 2 / 64, 16 / 128, 16 / 64])
    boxes = decode(torch.zeros_like(priors), priors)
    torch.testing.assert_close(boxes[:, 2:] - boxes[:, :2], priors[:, 2:])
    torch.testing.assert_close((boxes[:, 2:] + boxes[:, :2]) / 2, priors[:, :2])


def test_fidelity_ignores_the_mouth_only():
    rng = np.random.default_rng(0)
    source = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[40, 20, 120, 100]])
    keep = keep_mask(source.shape[:2], boxes)
    assert not keep[80, 80] and keep[30, 80] and keep[115, 5]  # mouth / forehead / background
    mouth_changed = source.copy()
    mouth_changed[70:100, 50:110] = 0
    assert frame_fidelity(mouth_changed, source, keep) == (100.0, pytest.approx(1.0))
    background_changed = source.copy()
    background_changed[:15] = 255 - background_changed[:15]
    psnr, ssim = frame_fidelity(background_changed, source, keep)
    assert psnr < 30 and ssim < 0.95


# --- the metric, with a SyncNet trained here -------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    from latentsync_demo.testing.sync_synthetic import train_syncnet

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: more threads only add contention on a busy 2-core runner
    try:
        yield train_syncnet(steps=200)
    finally:
        torch.set_num_threads(threads)


def test_own_audio_scores_higher_than_shifted_or_other_audio(trained):
    from latentsync_demo.testing.sync_synthetic import synthetic_clip

    frames, audio = synthetic_clip(4.0, seed=5)
    _, other = synthetic_clip(4.0, seed=9)
    own = evaluate_track(trained, frames, audio)
    n = num_windows(len(frames), len(audio))
    lips = lip_features(trained, frames, n)

    def score(samples):
        return summarize(offset_distances(lips, audio_features(trained, samples, n)))

    late5, late40, different = score(np.roll(audio, 5 * 640)), score(np.roll(audio, 40 * 640)), score(other)
    print(f"\nconfidence / LSE-D / offset: own {own.confidence:.2f} / {own.min_dist:.2f} / {own.offset}, "
          f"audio 5 frames late {late5.confidence:.2f} / {late5.min_dist:.2f} / {late5.offset}, "
          f"1.6 s late {late40.confidence:.2f} / {late40.min_dist:.2f}, other {different.confidence:.2f} / "
          f"{different.min_dist:.2f}")
    assert own.offset == 0
    assert late5.offset == -5  # found the shift: the official sign (audio later -> negative offset)
    assert own.confidence > 2 * max(late40.confidence, different.confidence)
    assert own.min_dist < min(late40.min_dist, different.min_dist)


@pytest.fixture(scope="module")
def box_clip(tmp_path_factory):
    """A 3 s video whose official crop (of the returned box) gives back synthetic mouths, and two wavs."""
    from latentsync_demo.media import VideoWriter, write_wav
    from latentsync_demo.testing.sync_synthetic import synthetic_clip

    folder = tmp_path_factory.mktemp("box_clip")
    frames, audio = synthetic_clip(3.0, seed=5)
    _, other = synthetic_clip(3.0, seed=9)
    # Place each 224 px crop so that the official crop of the box below gives it back (half size 80).
    canvas = np.full((len(frames), 320, 320, 3), 110, np.uint8)
    canvas[:, 48:272, 48:272] = frames[..., ::-1]  # BGR crops -> RGB frames
    video = folder / "clip.mp4"
    with VideoWriter(video, 320, 320) as writer:
        writer.write_batch(canvas)
    write_wav(folder / "own.wav", audio)
    write_wav(folder / "other.wav", other)
    return video, folder / "own.wav", folder / "other.wav", audio, np.array([[80.0, 48.0, 240.0, 208.0, 1.0]])


def test_scoring_a_video_file(trained, box_clip, tmp_path):
    """End to end on encoded files: decode, box tracks, official crops, audio from the file."""
    from latentsync_demo.eval.scorer import SyncScorer, score_line
    from latentsync_demo.media import write_wav

    video, own_wav, other_wav, audio, box = box_clip
    scorer = SyncScorer(trained, detect=lambda frame: box, face_detector="test box", min_face_size=50)
    own, different = scorer.score(video, own_wav), scorer.score(video, other_wav)
    print(f"\nfile: {score_line(own, different)}")
    assert own.offset == 0 and own.confidence > 2 * different.confidence
    assert score_line(own, different).startswith(f"Lip sync: confidence {own.confidence:.2f} (original clip: ")

    with pytest.raises(InputError, match="silent"):
        write_wav(tmp_path / "silence.wav", np.zeros(len(audio), np.float32))
        scorer.score(video, tmp_path / "silence.wav")
    with pytest.raises(InputError, match="no face"):
        SyncScorer(trained, detect=lambda frame: np.zeros((0, 5))).score(video, own_wav)
    short = tmp_path / "short.wav"
    write_wav(short, audio[:4 * 640])
    with pytest.raises(InputError, match="too short"):
        scorer.score(video, short)


def test_eval_command_scores_a_csv(trained, box_clip, tmp_path, capsys):
    from latentsync_demo.eval.batch import read_pairs, score_pairs, summary_table
    from latentsync_demo.eval.scorer import SyncScorer

    video, own_wav, other_wav, _, box = box_clip
    listing = tmp_path / "pairs.csv"
    listing.write_text(f"video,audio,source\n{video},{own_wav},{video}\n{video},{other_wav},\n"
                       f"missing.mp4,,\n")
    pairs = read_pairs(listing)
    assert pairs[2].video == tmp_path / "missing.mp4"  # relative to the CSV
    scorer = SyncScorer(trained, detect=lambda frame: box, face_detector="test box", min_face_size=50)
    rows = score_pairs(pairs, scorer, tmp_path / "scores.csv")
    assert rows[0]["confidence"] > 2 * rows[1]["confidence"] and rows[0]["psnr"] == 100.0 and rows[0]["ssim"] == 1.0
    assert "missing.mp4" in rows[2]["error"] and "confidence" not in rows[2]
    table = summary_table(rows)
    assert "LSE-C" in table and "2 of 3 clips scored" in table
    written = (tmp_path / "scores.csv").read_text().splitlines()
    assert written[0].startswith("video,audio,source,confidence,lse_d,offset") and len(written) == 4


def test_service_scores_with_official_file_formats(tmp_path):
    """Random full-size SyncNet v2 saved as auxiliary/syncnet_v2.model; no sfd_face.pth, so the landmark
    fallback finds the face and the line says so; without the weights the message says how to get them."""
    from latentsync_demo.service import LipSyncService
    from latentsync_demo.testing.media import make_talking_head_clip

    service = LipSyncService(checkpoints=tmp_path / "ckpt", device="cpu")
    with pytest.raises(CheckpointError, match="python -m latentsync_demo.eval --download"):
        service.score_job(tmp_path / "x.mp4", tmp_path / "x.mp4")
    (tmp_path / "ckpt" / "auxiliary").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(SyncNetV2().state_dict(), tmp_path / "ckpt" / "auxiliary" / "syncnet_v2.model")
    clip = make_talking_head_clip(tmp_path / "clip.mp4", seconds=1.0, fps=25, size=(384, 384))
    line = service.score_job(clip, clip)
    print(f"\nrandom weights: {line}")
    assert line.startswith("Lip sync: confidence ") and "(original clip: " in line and "offset" in line
    assert "faces from mediapipe landmarks" in line


# --- the training critic: --syncnet stable_syncnet.pt ------------------------------------------------------

def test_stable_syncnet_training_loss(stable_tiny):
    """Whole 256 px faces in, lower half + frame stacking inside: the fixture's loss comes back out, with
    gradients for the faces (what the distillation's student learns from)."""
    from latentsync_demo.training.syncnet import StableSyncLoss, load_syncnet

    path, config, io = stable_tiny
    loss_fn = load_syncnet(path, config=config)
    assert isinstance(loss_fn, StableSyncLoss) and loss_fn.input_key == "mel"
    lower = ((io["image_lower_u8"][:16].float() - 128) / 128).permute(0, 3, 1, 2)  # (16, 3, 128, 256)
    faces = torch.cat([torch.rand(16, 3, 128, 256) * 2 - 1, lower], dim=2)[None].requires_grad_(True)
    loss = loss_fn(faces, io["audio_sequences"][:1])
    # Measured identical to the fixture's loss (`python bench/bench_conformance.py --only syncnet`, 2 threads).
    assert loss.item() == io["cosine_loss"][0].item()
    loss.backward()
    assert faces.grad[:, :, :, 128:].abs().sum() > 0 and faces.grad[:, :, :, :128].abs().sum() == 0


def test_syncnet_mel_and_cached_windows(tmp_path):
    from latentsync_demo.audio.syncnet_mel import mel_start, mel_window_length, syncnet_mel
    from latentsync_demo.training.data import WindowDataset, write_clip

    t = np.arange(16000) / 16000
    mel = syncnet_mel(0.5 * np.sin(2 * np.pi * 1000 * t))
    assert mel.shape == (80, 81) and mel.min() >= -4 and mel.max() <= 4
    assert 23 < int(mel[:, 40].argmax()) < 29  # 1 kHz: band ~26 of 80 on the Slaney mel scale, 55-7600 Hz
    assert (syncnet_mel(np.zeros(1600)) == -4).all()
    assert mel_window_length(16) == 52 and mel_start(10) == 32 and mel_start(11) == 35

    n, first = 40, 10
    columns = torch.arange(200, dtype=torch.float32)[None].repeat(80, 1)  # value = absolute column
    m0 = mel_start(first)
    write_clip(tmp_path / "a.safetensors", torch.zeros(n, 3, 8, 8, dtype=torch.uint8), torch.zeros(n, 50, 4),
               columns[:, m0:m0 + 100], first_frame=first, mel_start=m0)
    dataset = WindowDataset(tmp_path, num_frames=16)
    assert dataset.has_mel
    for index in range(3):
        _, start, _ = dataset.window(index)
        window = dataset[index]["mel"]
        assert window.shape == (1, 80, 52) and window[0, 0, 0] == mel_start(first + start)


def test_scoring_the_original_reuses_the_jobs_face_boxes(tmp_path, monkeypatch):
    """Without sfd_face.pth the scorer finds faces with the same landmark detector the job ran on the same 25 fps
    frames: the job's boxes are exactly what it would find, so the original is not searched again."""
    from latentsync_demo.eval.faces import detect_boxes, landmark_boxes
    from latentsync_demo.eval.scorer import SyncScorer
    from latentsync_demo.media import iter_frames
    from latentsync_demo.service import LipSyncService
    from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip
    from latentsync_demo.testing.tiny_checkpoints import write_tiny_checkpoints

    checkpoints = write_tiny_checkpoints(tmp_path / "ckpt")
    (checkpoints / "auxiliary").mkdir(exist_ok=True)
    torch.manual_seed(0)
    torch.save(SyncNetV2().state_dict(), checkpoints / "auxiliary" / "syncnet_v2.model")
    service = LipSyncService(checkpoints=checkpoints, device="cpu")
    clip = make_talking_head_clip(tmp_path / "clip.mp4", seconds=1.0, fps=25, size=(256, 256))
    speech = make_speech_wav(tmp_path / "speech.wav", seconds=1.0)
    out = tmp_path / "out.mp4"
    track = list(service.lipsync(clip, speech, out, num_inference_steps=1, consent=True))[-1].face_track
    detect, close = landmark_boxes()
    try:
        expected = detect_boxes(iter_frames(clip, fps=25), detect)
    finally:
        close()
    assert track.backend == "mediapipe" and len(track.boxes) == len(expected) == 25
    assert all(np.array_equal(got, want) for got, want in zip(track.boxes, expected))

    searched = []
    scorer = service.scorer()
    monkeypatch.setattr(scorer, "_detect", lambda video, *args: searched.append(Path(video))
                        or SyncScorer._detect(scorer, video, *args))
    line = service.score_job(out, clip, speech)
    assert searched == [out] and "(original clip: " in line  # only the result was searched for faces
    searched.clear()
    service.score_job(out, tmp_path / "clip.mp4", speech)  # the same file: still reused
    assert searched == [out]


def _all_in_memory_score(model, crops: np.ndarray, audio: np.ndarray):
    """The scorer before it streamed, verbatim: every crop of the track as one float tensor, then the official
    batches of 20 windows."""
    n = num_windows(len(crops), len(audio))
    video = torch.from_numpy(np.ascontiguousarray(crops)).permute(3, 0, 1, 2).unsqueeze(0).float()
    with torch.no_grad():
        feats = [model.eval().forward_lip(torch.cat([video[:, :, i:i + 5] for i in range(start, min(n, start + 20))]))
                 for start in range(0, n, 20)]
    return summarize(offset_distances(torch.cat(feats), audio_features(model, audio, n)))


def test_streamed_score_equals_the_all_in_memory_score(tmp_path, monkeypatch):
    """The scorer streams each track's crops into SyncNet a batch of windows at a time: at most 20 + 4 crops are
    held, and the distances equal, bit for bit, those of all the track's crops in memory at once."""
    from latentsync_demo.eval import sync
    from latentsync_demo.eval.faces import build_tracks, crop_tracks, detect_boxes, landmark_boxes
    from latentsync_demo.eval.scorer import SyncScorer
    from latentsync_demo.media import iter_frames, load_audio, to_int16
    from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip

    clip = make_talking_head_clip(tmp_path / "clip.mp4", seconds=1.2, fps=25, size=(320, 320))
    speech = make_speech_wav(tmp_path / "speech.wav", seconds=1.2)
    torch.manual_seed(0)
    model = SyncNetV2()
    held = []
    push = sync.LipWindows.push
    monkeypatch.setattr(sync.LipWindows, "push", lambda self, crop: push(self, crop) or held.append(len(self.pending)))
    streamed = SyncScorer(model, None, "mediapipe").score(clip, speech)

    detect, close = landmark_boxes()
    try:
        # min_track 28: what the scorer uses on a 30-frame clip
        tracks = build_tracks(detect_boxes(iter_frames(clip, fps=25), detect), min_track=28)
    finally:
        close()
    assert len(tracks) == len(streamed.tracks) == 1 and len(tracks[0].frames) == 30
    crops = next(crop_tracks(clip, tracks))
    reference = _all_in_memory_score(model, crops, to_int16(load_audio(speech))[:30 * 640])
    assert streamed.tracks[0].num_windows == reference.num_windows == 25  # batches of 20 and 5 windows
    np.testing.assert_array_equal(streamed.tracks[0].mean_dists, reference.mean_dists)
    assert (streamed.offset, streamed.min_dist, streamed.confidence) == (
        reference.offset, reference.min_dist, reference.confidence)
    assert len(held) == 30 and max(held) == 20 + 4 - 1  # the 24th crop completes a batch, which is then let go


def test_lip_windows_on_a_short_decode_score_what_came():
    """A decode shorter than the track: the windows the official code scores on those frames, else a message."""
    from latentsync_demo.eval.sync import LipWindows

    torch.manual_seed(0)
    model = SyncNetV2()
    crops = np.random.default_rng(0).integers(0, 255, (12, 224, 224, 3), dtype=np.uint8)
    windows = LipWindows(model, n=10, batch_size=4)
    for crop in crops[:9]:
        windows.push(crop)
    torch.testing.assert_close(windows.features(), lip_features(model, crops[:9], 4, batch_size=4), rtol=0, atol=0)
    short = LipWindows(model, n=10)
    for crop in crops[:5]:
        short.push(crop)
    with pytest.raises(InputError, match="too short to measure lip sync: 5 frames"):
        short.features()
