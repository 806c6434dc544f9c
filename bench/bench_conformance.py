"""Measure how far this implementation is from the official conformance vectors, one line per checked output.

    python bench/bench_conformance.py [--reference DIR] [--only unet,whisper,align,syncnet,e2e]

DIR defaults to $LATENTSYNC_REFERENCE_DIR, else ../shared/reference (the vectors made with the official
LatentSync code, see its README). Each line is the largest absolute difference (and, for images, how many
values differ) between our output and the official one, computed the way the conformance test of that output
computes it (named on each line). The tests' bounds are set from these figures (at most 5x, see the comment at
each bound). `e2e` runs the tiny pipeline twice (DeepCache on and off) and takes a few minutes on 2 CPU cores.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import wave
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("unet", "whisper", "align", "syncnet", "e2e")


def _max(a, b) -> float:
    return float((torch.as_tensor(a).double() - torch.as_tensor(b).double()).abs().max())


def _line(test: str, what: str, value: float | str) -> None:
    shown = value if isinstance(value, str) else f"{value:.2e}"
    print(f"  {what:52s} {shown:>12s}   ({test})")


@torch.no_grad()
def unet(ref: Path) -> None:
    from safetensors.torch import load_file

    from latentsync_demo.models import UNet3DConditionModel

    print("UNet, tiny official fixture (reference README section 2), float32 CPU")
    model = UNet3DConditionModel.from_config(json.loads((ref / "unet_tiny_config.json").read_text())).eval()
    model.load_state_dict({k: v.float() for k, v in load_file(str(ref / "unet_tiny_state_dict.safetensors")).items()})
    io = torch.load(ref / "unet_tiny_io.pt", weights_only=True)
    for key, expected, audio in (("timestep", "out", True), ("timestep_b", "out_timestep_b", True),
                                 ("timestep", "out_no_audio", False)):
        out = model(io["sample"], io[key], io["encoder_hidden_states"] if audio else None).sample
        _line("tests/test_unet.py", f"{expected}: max |diff|", _max(out, io[expected]))
    model64 = UNet3DConditionModel.from_config(model.config).double().eval()
    model64.load_state_dict(model.state_dict())
    out = model64(io["sample"].double(), io["timestep"], io["encoder_hidden_states"].double()).sample
    _line("tests/test_unet.py", "out_fp64 (float64 model): max |diff|", _max(out, io["out_fp64"]))


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


def whisper(ref: Path) -> None:
    from latentsync_demo.audio import WhisperAudioEncoder, log_mel_spectrogram
    from latentsync_demo.audio.mel import mel_filters

    print("Whisper features, official Audio2Feature fixtures (reference README section 3), float32 CPU")
    encoder = WhisperAudioEncoder.from_openai_checkpoint(ref / "whisper_tiny_random.pt")
    clips = {"demo1": ref.parent / "media" / "demo1_audio.wav", "long": ref / "long_audio_demo2_demo3.wav"}
    test = "tests/test_audio_features.py"
    for clip, wav in clips.items():
        fx = torch.load(ref / f"whisper_fixture_{clip}.pt", weights_only=True)
        if clip == "demo1":
            _line(test, "mel filters: max |diff|", _max(mel_filters(80), fx["mel_filters"]))
        audio = _read_wav(wav)
        _line(test, f"{clip}: log-mel max |diff|", _max(log_mel_spectrogram(torch.from_numpy(audio)), fx["log_mel"]))
        features = encoder.encode(audio, use_cache=False)
        _line(test, f"{clip}: features max |diff|", _max(features, fx["features"]))
        chunks = WhisperAudioEncoder.frame_chunks(features, 25, frame_indices=fx["chunks_subset_index"])
        _line(test, f"{clip}: stored chunks max |diff|", _max(chunks, fx["chunks_subset"]))
        indices = WhisperAudioEncoder.chunk_indices(features.shape[0], fps=25)
        same = len(indices) == fx["num_chunks"] and torch.equal(indices, fx["chunk_feature_indices"].long())
        _line(test, f"{clip}: chunk count and indices", "identical" if same else "DIFFERENT")


def _differ(ours: np.ndarray, theirs: np.ndarray) -> tuple[int, int]:
    diff = np.abs(ours.astype(np.int64) - theirs.astype(np.int64))
    return int(diff.max()), int(np.count_nonzero(diff))


def align(ref: Path) -> None:
    import cv2

    from latentsync_demo.face import FaceAligner, latent_mask, load_mask

    print("Face align / paste-back / mask, official AlignRestore fixture (reference README section 4), float32 CPU")
    fx = dict(np.load(ref / "affine_fixture.npz"))
    test = "tests/test_face_alignment.py"
    for r in (256, 512):
        pre, aligner = f"r{r}_fp32_", FaceAligner(r)
        worst = {"matrix": 0.0, "p_bias": 0.0}
        counts = {"aligned": [0, 0, 0], "resized": [0, 0, 0], "restored": [0, 0, 0]}  # max, differing, total
        for i in range(len(fx["frames"])):
            face, matrix = aligner.align_unresized(fx["frames"][i], fx["landmarks"][i])
            worst["matrix"] = max(worst["matrix"], _max(matrix, fx[pre + "affine_matrix_fp32"][i]))
            worst["p_bias"] = max(worst["p_bias"], _max(aligner.p_bias, fx[pre + "p_bias"][i]))
            generated = (torch.from_numpy(fx[pre + "generated_face_u8"][i]).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
            outputs = {
                "aligned": (face, fx[pre + "aligned_face"][i]),
                "resized": (cv2.resize(face, (r, r), interpolation=cv2.INTER_LANCZOS4), fx[pre + "aligned_face_resized"][i]),
                "restored": (aligner.restore(fx["frames"][i], generated, fx[pre + "affine_matrix_fp32"][i]),
                             fx[pre + "restored"][i]),
            }
            for name, (ours, theirs) in outputs.items():
                m, n = _differ(ours, theirs)
                c = counts[name]
                c[0], c[1], c[2] = max(c[0], m), c[1] + n, c[2] + ours.size
        for name, value in worst.items():
            _line(test, f"{r} px {name} (5 frames): max |diff|", value)
        for name, (m, n, total) in counts.items():
            _line(test, f"{r} px {name} faces (5 frames): max |diff|, share", f"{m}, {n / total:.3%}")
        mask = load_mask(r)
        mask_u8 = np.round(mask[0].numpy() * 255).astype(np.uint8)
        m, n = _differ(mask_u8, fx[f"mask_r{r}_u8"])
        _line(test, f"{r} px mask (uint8): max |diff|", f"{m}")
        _line(test, f"{r} px latent mask: max |diff|", _max(latent_mask(mask)[0], fx[f"mask_r{r}_latent"]))


@torch.no_grad()
def syncnet(ref: Path, tmp: Path) -> None:
    from safetensors.torch import load_file

    from latentsync_demo.eval.sync import audio_features, lip_features, mfcc, offset_distances, summarize
    from latentsync_demo.models.stable_syncnet import load_stable_syncnet, stack_frames, sync_loss
    from latentsync_demo.models.syncnet_v2 import load_syncnet_v2

    print("SyncNets, official random-weight fixtures (reference README section 5), CPU")
    test = "tests/test_syncnet.py"
    config = json.loads((ref / "syncnet_stable_tiny_config.json").read_text())
    path = tmp / "stable_syncnet.pt"
    torch.save({"state_dict": load_file(str(ref / "syncnet_stable_tiny_state_dict.safetensors"))}, path)
    io = torch.load(ref / "syncnet_stable_tiny_io.pt", weights_only=True)
    visual = ((io["image_lower_u8"].float() - 128) / 128).permute(0, 3, 1, 2).reshape(2, 16, 3, 128, 256)
    for dtype, suffix, batch in ((torch.float32, "", 2), (torch.float64, "_fp64", 1)):
        model = load_stable_syncnet(path, config, dtype=dtype)
        v, a = model(stack_frames(visual[:batch].to(dtype), lower_half=False), io["audio_sequences"][:batch].to(dtype))
        name = "float32" if dtype == torch.float32 else "float64"
        _line(test, f"StableSyncNet {name} vision embeds: max |diff|", _max(v, io["vision_embeds" + suffix][:batch]))
        _line(test, f"StableSyncNet {name} audio embeds: max |diff|", _max(a, io["audio_embeds" + suffix][:batch]))
        if dtype == torch.float32:
            _line(test, "StableSyncNet cosine loss: max |diff|", _max(sync_loss(v, a), io["cosine_loss"]))

    from latentsync_demo.training.syncnet import load_syncnet

    lower = ((io["image_lower_u8"][:16].float() - 128) / 128).permute(0, 3, 1, 2)
    faces = torch.cat([torch.rand(16, 3, 128, 256) * 2 - 1, lower], dim=2)[None]  # upper half: ignored
    with torch.enable_grad():  # as in training (and the test)
        loss = load_syncnet(path, config=config)(faces.requires_grad_(True), io["audio_sequences"][:1])
    _line(test, "StableSyncLoss (training path) loss: |diff|", abs(loss.item() - io["cosine_loss"][0].item()))

    io = torch.load(ref / "syncnet_eval_io.pt", weights_only=True)
    torch.save(load_file(str(ref / "syncnet_eval_state_dict.safetensors")), tmp / "syncnet_v2.model")
    model = load_syncnet_v2(tmp / "syncnet_v2.model")
    audio = io["audio_int16"].numpy()
    _line(test, "eval SyncNet MFCC: max |diff|", _max(mfcc(audio), io["mfcc"]))
    frames, n = io["frames_bgr"].numpy()[:11], 6
    _line(test, "eval SyncNet lip features (6 windows): max |diff|", _max(lip_features(model, frames, n), io["im_feat"][:n]))
    _line(test, "eval SyncNet audio features (6 windows): max |diff|",
          _max(audio_features(model, audio[:11 * 640], n), io["cc_feat"][:n]))
    dists = offset_distances(io["im_feat"], io["cc_feat"], io["vshift"])
    _line(test, "eval distances from the stored features: max |diff|", _max(dists, io["dists"]))
    result = summarize(dists, io["vshift"])
    _line(test, "eval mean distances: max |diff|", _max(result.mean_dists, io["mean_dists"]))
    _line(test, "eval min distance: |diff|", abs(result.min_dist - float(io["min_dist"])))
    _line(test, "eval confidence: |diff|", abs(result.confidence - float(io["conf"])))
    _line(test, "eval offset", "identical" if result.offset == io["av_offset"] else "DIFFERENT")


def e2e(ref: Path) -> None:
    from latentsync_demo.testing.official_e2e import load_official_e2e, pool, step_latents

    print("End-to-end tiny pipeline, DeepCache on and off (reference README section 6), float32 CPU")
    pipeline, faces, inputs = load_official_e2e(ref)
    scheduler = pipeline.scheduler
    test = "tests/test_deepcache.py"
    for mode in ("on", "off"):
        expected = torch.load(ref / f"e2e_deepcache_{mode}.pt", weights_only=True)
        scheduler.recorded = []
        with torch.no_grad():
            out = pipeline(faces, inputs["whisper_chunks"], num_inference_steps=5, guidance_scale=1.5,
                           generator=torch.Generator().manual_seed(int(inputs["seed"])), deepcache=mode == "on")
        steps = step_latents(scheduler.recorded)
        _line(test, f"DeepCache {mode}: step latents (pooled 4): max |diff|", _max(pool(steps, 4), expected["step_latents_pool4"]))
        _line(test, f"DeepCache {mode}: final latents: max |diff|", _max(steps[-1][None], expected["final_latents"]))
        _line(test, f"DeepCache {mode}: synced faces (pooled 8): max |diff|", _max(pool(out, 8), expected["out_pool8"]))
        _line(test, f"DeepCache {mode}: synced faces 0, 22: max |diff|", _max(out[expected["out_full_index"]], expected["out_full"]))
        _line(test, f"DeepCache {mode}: per-face mean |value|: max |diff|",
              _max(out.abs().mean(dim=(1, 2, 3)), expected["out_mean_abs"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = os.environ.get("LATENTSYNC_REFERENCE_DIR", str(REPO.parent / "shared" / "reference"))
    parser.add_argument("--reference", type=Path, default=Path(default))
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ",".join(SECTIONS))
    args = parser.parse_args()
    if not (args.reference / "README.md").is_file():
        raise SystemExit(f"conformance vectors not found at {args.reference} (pass --reference DIR)")
    torch.set_num_threads(min(2, os.cpu_count() or 1))  # as the test suite (tests/conftest.py)
    print(f"reference: {args.reference}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for section in args.only.split(","):
            if section not in SECTIONS:
                raise SystemExit(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")
            if section == "syncnet":
                syncnet(args.reference, Path(tmp))
            else:
                globals()[section](args.reference)


if __name__ == "__main__":
    main()
