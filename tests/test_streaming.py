"""The streaming job (analysis, generation and paste-back in parallel) writes exactly what the sequential
passes write: the whole face pass first, then generation, then paste-back frame by frame; so does every stage
policy (several restore workers, the official order)."""

from contextlib import closing

import numpy as np
import pytest
import torch

from latentsync_demo.face import FaceAligner
from latentsync_demo.face.landmarks import make_detector
from latentsync_demo.face.track import track_faces
from latentsync_demo.media import SAMPLE_RATE, VideoWriter, load_audio, probe, read_frames
from latentsync_demo.pipeline.job import JobPlan, StagePolicy, run_lipsync_job
from latentsync_demo.pipeline.length import pingpong_index, plan_length
from latentsync_demo.pipeline.streaming import FrameStore, prefetch
from latentsync_demo.settings import GenerationSettings
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip

W, H = 256, 192


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    clip = make_talking_head_clip(root / "clip.mp4", seconds=0.8, fps=25, size=(W, H))
    frames = read_frames(clip)
    frames[3:6] = 128  # three frames without a face: they borrow their neighbours' faces
    with VideoWriter(root / "covered.mp4", W, H, 25) as writer:
        writer.write_batch(frames)
    return root / "covered.mp4", make_speech_wav(root / "speech.wav", seconds=1.5)  # 38 frames: ping-pong


def _sequential_reference(tiny_service, video, audio_path, steps, seed) -> np.ndarray:
    """Today's job as separate passes over the whole clip (the pre-streaming algorithm)."""
    models = tiny_service.models()
    res = models.resolution
    tracked = list(track_faces(read_frames(video), make_detector("mediapipe"), FaceAligner(res)))
    frames = [f for f, _, _ in tracked]
    have = np.array([i for i, (_, face, _) in enumerate(tracked) if face is not None])
    stand_in = [int(have[np.abs(have - i).argmin()]) for i in range(len(tracked))]
    audio = load_audio(audio_path)
    num_out = int(round(len(audio) / SAMPLE_RATE * 25))
    plan = plan_length(len(frames), num_out, "pingpong")  # the default length mode
    sources = plan.sources
    assert list(sources) == [pingpong_index(i, len(frames)) for i in range(num_out)]
    faces = torch.from_numpy(np.stack([tracked[stand_in[s]][1] for s in sources])).permute(0, 3, 1, 2)
    features = models.audio_encoder.encode(plan.driving_audio(audio, SAMPLE_RATE // 25))
    chunks = models.audio_encoder.frame_chunks(features, fps=25, frame_indices=range(num_out))
    pipe = tiny_service.pipeline()
    generated = pipe(faces, chunks, steps, guidance_scale=1.5, seed=seed, deepcache=True)
    aligner = FaceAligner(res)
    out = []
    for i, s in enumerate(sources):
        matrix = tracked[s][2]
        out.append(frames[s] if matrix is None else aligner.restore_generated(frames[s], generated[i], matrix))
    return np.stack(out)


@pytest.fixture(scope="module")
def expected(tiny_service, media, tmp_path_factory):
    """The sequential passes' frames, through the same encoder with the same settings."""
    video, speech = media
    frames = _sequential_reference(tiny_service, video, speech, 3, seed=9)
    assert len(frames) == 38
    path = tmp_path_factory.mktemp("expected") / "expected.mp4"
    with VideoWriter(path, W, H, 25) as writer:
        writer.write_batch(frames)
    return read_frames(path)


POLICIES = {"streaming": StagePolicy(restore_workers=1), "3 restore workers": StagePolicy(restore_workers=3),
            "official order": StagePolicy(restore_workers=1, face_pass_first=True, paste_each_chunk=True)}


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
def test_streaming_job_equals_sequential_passes(tiny_service, media, expected, policy, tmp_path):
    video, speech = media
    # The engine itself (the service adds consent checks and an invisible watermark on top: compared unmarked).
    settings = GenerationSettings(num_inference_steps=3, seed=9, landmarks="mediapipe")
    plan = JobPlan(probe(video), probe(speech), tmp_path / "out.mp4", settings, "pingpong")
    with closing(make_detector("mediapipe")) as detector:
        events = list(run_lipsync_job(tiny_service.pipeline(), plan, detector, stages=policy))
    got = read_frames(tmp_path / "out.mp4")
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)
    generating = [e for e in events if e.stage == "generating"]
    assert [e.chunk for e in generating] == [1, 2, 3] and all(e.preview is not None for e in generating)
    assert events[-1].stage == "done" and events[-1].frames == 38


def test_prefetch_keeps_order_bounds_the_queue_and_passes_errors():
    made = []

    def produce(n, fail_at=None):
        for i in range(n):
            if i == fail_at:
                raise ValueError("broken input")
            made.append(i)
            yield i

    assert list(prefetch(produce(50), maxsize=4)) == list(range(50))
    made.clear()
    items = prefetch(produce(50), maxsize=4)
    assert next(items) == 0
    import time

    time.sleep(0.3)  # the producer runs ahead only as far as the queue allows
    assert len(made) <= 1 + 4 + 1
    items.close()
    with pytest.raises(ValueError, match="broken input"):
        list(prefetch(produce(10, fail_at=5), maxsize=2))


def test_frame_store_reads_while_it_is_written(tmp_path):
    store = FrameStore(tmp_path / "frames.u8", (2, 3, 3))
    frames = np.random.default_rng(0).integers(0, 256, (5, 2, 3, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        store.append(frame)
        assert np.array_equal(store[i], frame) and np.array_equal(store[0], frames[0])
    store.close()
