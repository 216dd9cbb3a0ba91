"""Speed and memory levers keep the results: windows from the checkpoint, streaming equals the in-memory
path, the chunked speech features equal the whole clip's, torch.compile sees one graph, bf16 by default."""

import pytest
import torch

from tiny import make_frames, make_model_checkpoint, make_speech_like, make_whisper_folder

FPS = 25.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from omnisync_core.api import load_runtime

    root = str(tmp_path_factory.mktemp("speed"))
    model, codec, encoder, meta = load_runtime(make_model_checkpoint(root, use_text=False), make_whisper_folder(root),
                                               "cpu", torch.float32)
    return model, codec, encoder, meta


def test_windowed_by_default_and_the_checkpoint_decides_window_and_overlap():
    from omnisync_core.sampling.options import resolve_options

    opts, rep = resolve_options(None)
    assert (opts.window, opts.overlap) == (16, 1) and rep["from"]["window"] == "default"
    opts, rep = resolve_options({"sampling": {"window": 16, "overlap": 0, "num_steps": 8}})
    assert (opts.window, opts.overlap) == (16, 0) and rep["from"]["overlap"] == "checkpoint"
    opts, _ = resolve_options({"sampling": {"window": 16}}, window=0)  # the whole clip only on request
    assert opts.window == 0


def test_bundled_checkpoint_recommends_its_training_window():
    from omnisync_core.api import BUNDLED_MODEL
    from omnisync_core.model.checkpoint import read_metadata
    from omnisync_core.sampling.options import resolve_options

    opts, rep = resolve_options(read_metadata(BUNDLED_MODEL))
    assert (opts.window, opts.overlap) == (16, 0) and rep["from"]["window"] == rep["from"]["overlap"] == "checkpoint"


def test_auto_dtype_is_bf16_only_where_native():
    from omnisync_core.model.precision import auto_dtype, cpu_has_bf16, resolve_dtype

    assert auto_dtype("cpu") == (torch.bfloat16 if cpu_has_bf16() else torch.float32)
    assert resolve_dtype("fp32", "cpu") == torch.float32 and resolve_dtype("auto", "cpu") == auto_dtype("cpu")
    assert auto_dtype("meta") == torch.float32


def test_bf16_network_keeps_the_source_pixels_in_float32():
    """fp32 islands: a bf16 network gets the state and the source in float32 and builds x̂₀ = source + residual in
    float32, so with a zero residual (a fresh U-Net, the identity edit) every step keeps the float32 source."""
    from omnisync_core.model.unet import OmniSyncUNet, UNetConfig
    from omnisync_core.sampling.guidance import GuidanceConfig
    from omnisync_core.sampling.sampler import denoise
    from omnisync_core.sampling.schedule import FlowMatchSchedule

    torch.manual_seed(0)
    model = OmniSyncUNet(UNetConfig(latent_channels=12, channels=(8,), audio_dim=64, audio_layers=2, audio_tokens=3,
                                    adapter_dim=8, freq_dim=8, mouth_params=0)).eval().to(torch.bfloat16)
    seen = []
    model.register_forward_pre_hook(lambda m, args, kwargs: seen.append((args[0].dtype, kwargs["source"].dtype)),
                                    with_kwargs=True)
    source = torch.rand(12, 3, 8, 8) * 2 - 1  # values bf16 cannot hold exactly
    assert not torch.equal(source.bfloat16().float(), source)
    sigmas = FlowMatchSchedule(4).truncate(1.0)
    x, _ = denoise(model, torch.randn(12, 3, 8, 8), source, torch.randn(3, 3, 64), None, sigmas,
                   GuidanceConfig(omega_peak=3.0), torch.tensor([[0.5, 0.5]] * 3))
    assert seen and all(d == (torch.float32, torch.float32) for d in seen)
    assert float((x - source).abs().max()) < 1e-5  # the last step lands on x̂₀ = source, not its bf16 rounding


class MemoryFrames:
    """A FrameSource over frames in memory (uint8), counting what was read."""

    def __init__(self, frames_u8):
        self.frames, self.num_frames, self.size = frames_u8, frames_u8.shape[0], tuple(frames_u8.shape[1:3])
        self.reads = 0

    def read(self, indices):
        self.reads += len(indices)
        return self.frames[indices]


@pytest.mark.parametrize("mouth, mode, composite", [("auto", "follow_audio_loop", False),
                                                    ((0.5, 0.6), "follow_video", True)])
def test_streaming_gives_the_frames_of_the_in_memory_path(tiny, mouth, mode, composite):
    from omnisync_core.pipelines.omnisync import OmniSyncPipeline
    from omnisync_core.sampling.options import SyncOptions
    from omnisync_core.pipelines.stream import stream_sync, to_uint8

    model, codec, encoder, _ = tiny
    pipe = OmniSyncPipeline(model, codec, encoder)
    src = to_uint8(make_frames(T=9, H=32, W=32))  # 9 frames; the speech (0.6 s = 15 frames) loops them
    wave = make_speech_like(0.6)
    opts = SyncOptions(tau=0.8, num_steps=4, window=4, overlap=1, mouth=mouth, length_mode=mode,
                       composite=composite, seed=3)
    whole = pipe(src.float() / 255, FPS, wave, 16000, opts)
    chunks = []
    source = MemoryFrames(src)
    rep = stream_sync(pipe, source, FPS, wave, 16000, lambda o, s, g, c: chunks.append((o, s, g, c)), opts)
    out = torch.cat([c[0] for c in chunks])
    assert len(chunks) == len(rep["windows"]) > 2  # written window by window
    assert out.shape == whole.frames.shape and out.dtype == torch.uint8
    assert int((out.int() - to_uint8(whole.frames).int()).abs().max()) <= 1  # ≤ 1/255
    assert torch.allclose(torch.cat([c[3] for c in chunks]), whole.mouth_centres, atol=1e-6)
    assert rep["forward_passes"] == whole.report["forward_passes"] and rep["windows"] == whole.report["windows"]
    assert source.reads == out.shape[0]  # every source frame read once: the overlap is kept, not re-read
    # the speech waiting in a file (what the CLI does) gives the same frames as the speech in memory
    from omnisync_core.audio.features import to_mono_16k
    from omnisync_core.io.audio import SpeechFile

    on_disk = []
    speech = SpeechFile.from_waveform(to_mono_16k(wave, 16000))
    stream_sync(pipe, MemoryFrames(src), FPS, speech, 16000, lambda o, s, g, c: on_disk.append(o), opts)
    assert torch.equal(torch.cat(on_disk), out)
    speech.close()


def test_chunked_speech_features_equal_the_whole_clips_across_whisper_chunks(tiny):
    from omnisync_core.audio.features import align_features_to_frames
    from omnisync_core.pipelines.stream import ChunkedFrameFeatures

    _, _, encoder, _ = tiny
    seconds = encoder.chunk_samples / 16000 + 1.3  # a second chunk
    wave = torch.from_numpy(make_speech_like(seconds)).float()
    T = int(seconds * FPS) + 5  # a few frames past the speech: silence
    L = encoder.spec.num_layers
    whole, _ = align_features_to_frames(encoder.encode(wave), FPS, T, silence_feature=encoder.silence_feature())
    keep = 2  # the model's last 2 layers
    dim = encoder.spec.dim
    feats = ChunkedFrameFeatures(encoder, wave, FPS, L, keep * dim)
    expected = whole.reshape(T, L, dim)[:, -keep:].reshape(T, -1)
    boundary = int(encoder.chunk_samples / 16000 * FPS)
    for lo, hi in ((0, 7), (boundary - 4, boundary + 4), (T - 9, T)):
        assert torch.allclose(feats.frames(lo, hi), expected[lo:hi], atol=1e-6), (lo, hi)
    assert len(feats._chunks) <= 2


def test_video_reader_reads_any_plan_without_the_whole_clip(tmp_path):
    from omnisync_core.io.video import VideoReader, read_video, write_video

    path = str(tmp_path / "clip.mp4")
    write_video(path, make_frames(T=7, H=16, W=16), FPS)
    frames, _ = read_video(path)
    with VideoReader(path) as reader:
        assert reader.num_frames == 7 and reader.size == (16, 16) and reader.fps == FPS
        plan = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 2])  # a loop back to the start
        got = reader.read(plan[:6]), reader.read(plan[6:])
        assert torch.equal(torch.cat(got).float() / 255, frames[plan])
    with VideoReader(path, keep_all=True) as reader:  # ping-pong walks backwards
        assert torch.equal(reader.read(torch.tensor([3, 2, 1])).float() / 255, frames[[3, 2, 1]])


def test_compiled_dit_forward_has_no_graph_breaks():
    from omnisync_core.model.config import preset
    from omnisync_core.model.dit import OmniSyncDiT

    torch.manual_seed(0)
    model = OmniSyncDiT(preset("tiny", latent_channels=12, audio_dim=96, use_text=False)).eval()
    x, src = torch.randn(2, 12, 2, 4, 4), torch.randn(1, 12, 2, 4, 4)
    audio, t = torch.randn(2, 2, 5, 96), torch.tensor([500.0, 500.0])
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(x, t, source=src, audio=audio)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
