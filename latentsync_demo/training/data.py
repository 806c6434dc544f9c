"""Training data: talking-head videos -> a cache of aligned faces + whisper chunks -> random 16-frame windows.

    python -m latentsync_demo.training.data VIDEOS_DIR CACHE_DIR [--checkpoints DIR] [--preset latentsync-1.5]

Preprocessing runs once (faces are found and aligned exactly as at inference: 25 fps, the chosen landmark
backend, ``FaceAligner`` at the preset's resolution; audio features are the inference whisper chunks). Each
run of consecutive frames that all have a face (and audio) becomes one cache file ``<video>_<k>.safetensors``:

    faces  uint8   (N, 3, R, R)    aligned RGB crops
    audio  float32 (N, 50, d)      whisper chunks of those frames (d = 384 for whisper tiny)
    mel    float32 (80, M)         StableSyncNet mel (``audio.syncnet_mel``) from column ``mel_start`` of the video
    wav2vec float32 (N, 10, d_w)   with --wav2vec: Wav2Vec2 chunks (phoneme-aware audio), aligned to the whisper
                                   rows exactly as at inference (``audio.phoneme``)
    metadata: source, first_frame, fps, resolution, mel_start, audio_windows (the Whisper windows mode the
              audio chunks were computed with, ``audio.windows``; caches written before it: official)

Training reads random windows: ``WindowDataset[i]`` is a deterministic function of (seed, i), so a run that
resumes at a step simply continues with the next indices.
"""

from __future__ import annotations

import argparse
import json
from contextlib import closing
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset

from ..audio.syncnet_mel import mel_start, mel_window_length, syncnet_mel
from ..errors import InputError, LatentSyncError
from ..face import FaceAligner
from ..face.landmarks import make_detector
from ..face.track import track_faces
from ..media import MODEL_FPS, SAMPLE_RATE, iter_frames, load_audio
from ..settings import AUDIO_WINDOW_MODES

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


def write_clip(path: str | Path, faces: torch.Tensor, audio: torch.Tensor, mel: torch.Tensor | None = None,
               wav2vec: torch.Tensor | None = None, **metadata) -> Path:
    """Write one cache clip: faces (N, 3, R, R) uint8, audio (N, 50, d) float, optional mel (80, M) float
    (pass ``mel_start`` and ``first_frame`` with it)."""
    if faces.dtype != torch.uint8 or faces.ndim != 4 or len(faces) != len(audio):
        raise ValueError(f"faces must be (N, 3, R, R) uint8 matching audio (N, 50, d); got {faces.shape} {audio.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: str(v) for k, v in {"resolution": faces.shape[-1], "fps": MODEL_FPS, **metadata}.items()}
    tensors = {"faces": faces.contiguous(), "audio": audio.float().contiguous()}
    if mel is not None:
        tensors["mel"] = mel.float().contiguous()
    if wav2vec is not None:  # (N, 10, d_w) Wav2Vec2 chunks (audio.wav2vec), for phoneme-aware audio
        if len(wav2vec) != len(faces):
            raise ValueError(f"wav2vec chunks {tuple(wav2vec.shape)} do not match {len(faces)} frames")
        tensors["wav2vec"] = wav2vec.float().contiguous()
    save_file(tensors, str(path), metadata=meta)
    return path


def _has_tensor(path: str | Path, name: str) -> bool:
    with safe_open(str(path), framework="pt") as f:
        return name in f.keys()


def clip_info(path: str | Path) -> tuple[int, int]:
    """(number of frames, face resolution) of a cache clip, read from its header only."""
    with safe_open(str(path), framework="pt") as f:
        return f.get_slice("faces").get_shape()[0], int(f.metadata()["resolution"])


def clip_audio_windows(path: str | Path) -> str:
    """The Whisper windows mode of a cache clip's audio chunks; "official" for clips cached before the modes
    existed (the official windows were the only ones then)."""
    with safe_open(str(path), framework="pt") as f:
        return f.metadata().get("audio_windows", "official")


def preprocess_video(video: str | Path, cache_dir: str | Path, audio_encoder, resolution: int,
                     landmarks: str = "mediapipe", min_frames: int = 16, face_index: int = 0,
                     wav2vec=None, audio_windows: str = "seamless") -> list[Path]:
    """Cache every run of >= ``min_frames`` consecutive face frames of ``video``; returns the files written.
    ``wav2vec``: an ``audio.wav2vec.Wav2Vec2AudioEncoder`` whose chunks are cached too (phoneme-aware audio).
    ``audio_windows``: the Whisper windows mode (as at inference), recorded in every clip."""
    video, cache_dir = Path(video), Path(cache_dir)
    waveform = load_audio(video)
    features = audio_encoder.encode(waveform, windows=audio_windows)
    w2v = None if wav2vec is None else wav2vec.encode(waveform, num_features=len(features))[:, None]  # (L, 1, d_w)
    mel = torch.from_numpy(syncnet_mel(waveform))  # (80, M) for the SyncNet loss
    num_frames = int(round(len(waveform) / SAMPLE_RATE * MODEL_FPS))  # frames the audio covers (as the video job)
    written: list[Path] = []

    def flush(run: list[tuple[int, np.ndarray]]) -> None:
        if len(run) < min_frames:
            return
        indices = [i for i, _ in run]
        faces = torch.from_numpy(np.stack([face for _, face in run])).permute(0, 3, 1, 2)
        chunks = audio_encoder.frame_chunks(features, fps=MODEL_FPS, frame_indices=indices)
        extra = {} if w2v is None else {"wav2vec": audio_encoder.frame_chunks(w2v, fps=MODEL_FPS,
                                                                              frame_indices=indices)}
        path = cache_dir / f"{video.stem}_{len(written):03d}.safetensors"
        m0, m1 = mel_start(indices[0]), mel_start(indices[-1]) + mel_window_length(min_frames)
        written.append(write_clip(path, faces, chunks, mel[:, m0:m1], source=video.name, first_frame=indices[0],
                                  mel_start=m0, audio_windows=audio_windows, **extra))

    detector = make_detector(landmarks)  # one per clip: mediapipe tracks faces across consecutive frames
    try:
        run: list[tuple[int, np.ndarray]] = []
        with closing(iter_frames(video, fps=MODEL_FPS)) as frames:  # closing stops ffmpeg if we stop early
            faces = track_faces(frames, detector, FaceAligner(resolution), face_index)
            for i, (_, face, _) in enumerate(faces):
                if i >= num_frames:
                    break
                if face is None:
                    flush(run)
                    run = []
                else:
                    run.append((i, face))
        flush(run)
    finally:
        detector.close()
    return written


def preprocess_folder(videos: str | Path, cache_dir: str | Path, audio_encoder, resolution: int,
                      landmarks: str = "mediapipe", min_frames: int = 16, wav2vec=None,
                      audio_windows: str = "seamless") -> list[Path]:
    """Preprocess every video in ``videos`` (recursively); unusable videos are reported and skipped."""
    paths = sorted(p for p in Path(videos).rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    if not paths:
        raise InputError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) found in {videos}")
    written = []
    for k, path in enumerate(paths):
        try:
            files = preprocess_video(path, cache_dir, audio_encoder, resolution, landmarks, min_frames,
                                     wav2vec=wav2vec, audio_windows=audio_windows)
        except InputError as exc:
            print(f"[{k + 1}/{len(paths)}] skipped {path.name}: {exc}", flush=True)
            continue
        print(f"[{k + 1}/{len(paths)}] {path.name}: {len(files)} clip(s)", flush=True)
        written += files
    return written


class WindowDataset(Dataset):
    """Random windows of a cache folder: item i -> {"faces", "ref_faces": (f, 3, R, R) uint8, "audio": (f, 50, d)}.

    Clips are drawn in proportion to their number of windows. As in LatentSync training, the reference frames
    come from another window of the same clip (at least ``num_frames`` away when the clip is long enough), so
    the model cannot copy the mouth from them. ``len()`` is virtual (``length``): items never repeat by design.
    """

    def __init__(self, cache_dir: str | Path, num_frames: int = 16, seed: int = 0, length: int = 2**40):
        self.files, self.lengths, resolutions = [], [], set()
        for path in sorted(Path(cache_dir).glob("*.safetensors")):
            n, resolution = clip_info(path)
            if n >= num_frames:
                self.files.append(path)
                self.lengths.append(n)
                resolutions.add(resolution)
        if len(resolutions) > 1:
            raise InputError(f"the cache {cache_dir} mixes face sizes {sorted(resolutions)}: use one cache per size")
        if not self.files:
            raise InputError(f"no cache clip of at least {num_frames} frames in {cache_dir}: run "
                             "python -m latentsync_demo.training.data VIDEOS_DIR CACHE_DIR first")
        modes = {clip_audio_windows(path) for path in self.files}
        if len(modes) > 1:  # one model is trained on one kind of features
            raise InputError(f"the cache {cache_dir} mixes audio windows modes {sorted(modes)}: re-cache it with "
                             "one --audio-windows")
        self.audio_windows = modes.pop()  # the trainer records it with the trained set (train_unet.save_final)
        self.resolution = resolutions.pop()
        # Caches made before the SyncNet loss have no mel.
        self.has_mel = all(_has_tensor(path, "mel") for path in self.files)
        self.num_frames, self.seed, self.length = num_frames, seed, length
        windows = np.array(self.lengths) - num_frames + 1
        self.weights = windows / windows.sum()

    def __len__(self) -> int:
        return self.length

    def window(self, index: int) -> tuple[int, int, int]:
        """(clip, start, reference start) of item ``index``."""
        rng = np.random.default_rng([self.seed, index])
        clip = int(rng.choice(len(self.files), p=self.weights))
        last = self.lengths[clip] - self.num_frames
        start = int(rng.integers(0, last + 1))
        far = [s for s in range(last + 1) if abs(s - start) >= self.num_frames]
        others = far or [s for s in range(last + 1) if s != start] or [start]
        return clip, start, int(others[rng.integers(0, len(others))])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip, start, ref = self.window(index)
        f = self.num_frames
        with safe_open(str(self.files[clip]), framework="pt") as data:
            faces = data.get_slice("faces")
            item = {"faces": faces[start:start + f], "ref_faces": faces[ref:ref + f],
                    "audio": data.get_slice("audio")[start:start + f].float()}
            if self.has_mel:
                item["mel"] = self._mel_window(data, start)
            if "wav2vec" in data.keys():
                item["wav2vec"] = data.get_slice("wav2vec")[start:start + f].float()
            return item

    def _mel_window(self, data, start: int) -> torch.Tensor:
        """(1, 80, ceil(f / 5 * 16)) mel of the window, cut at the official column int(3.2 * frame); padded with
        silence (-4) at the end of the audio, where the official loader would skip the sample instead."""
        meta = data.metadata()
        first = mel_start(int(meta["first_frame"]) + start) - int(meta["mel_start"])
        length = mel_window_length(self.num_frames)
        mel = data.get_slice("mel")[:, first:first + length].float()
        return torch.nn.functional.pad(mel, (0, length - mel.shape[1]), value=-4.0)[None]


def main(argv: list[str] | None = None) -> int:
    from ..audio import WhisperAudioEncoder
    from ..store import DEFAULT_PRESET, resolve

    parser = argparse.ArgumentParser(prog="python -m latentsync_demo.training.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", help="folder of talking-head videos (with sound)")
    parser.add_argument("cache", help="output folder for the .safetensors clips")
    parser.add_argument("--checkpoints", help="checkpoint root or folder (whisper and the resolution come from it)")
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    parser.add_argument("--resolution", type=int, help="face size (default: the preset's)")
    parser.add_argument("--landmarks", default="mediapipe", choices=("mediapipe", "face-alignment"))
    parser.add_argument("--min-frames", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--audio-windows", choices=AUDIO_WINDOW_MODES, default="seamless",
                        help="Whisper windows of videos over 30 s, as at inference (default seamless; official: "
                        "the official features)")
    parser.add_argument("--wav2vec", help="also cache Wav2Vec2 chunks (phoneme-aware audio) from this transformers "
                        "model or folder, e.g. facebook/wav2vec2-base-960h")
    args = parser.parse_args(argv)
    try:
        ckpt = resolve(args.preset, args.checkpoints)
        encoder = WhisperAudioEncoder.from_openai_checkpoint(ckpt.whisper, device=args.device)
        wav2vec = None
        if args.wav2vec:
            from ..audio.wav2vec import Wav2Vec2AudioEncoder

            wav2vec = Wav2Vec2AudioEncoder.from_pretrained(args.wav2vec, args.device)
        written = preprocess_folder(args.videos, args.cache, encoder, args.resolution or ckpt.resolution,
                                    args.landmarks, args.min_frames, wav2vec=wav2vec,
                                    audio_windows=args.audio_windows)
    except LatentSyncError as exc:
        print(f"error: {exc}")
        return 2
    frames = sum(clip_info(p)[0] for p in written)
    print(json.dumps({"clips": len(written), "frames": frames, "cache": str(args.cache)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
