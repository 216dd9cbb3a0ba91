"""OmniSync Audio Encode: speech → Whisper features per output video frame + the frame plan."""

from __future__ import annotations

import math

import torch
from comfy_api.latest import io

from omnisync_core.errors import OmniSyncError
from omnisync_core.io.frames import MIN_VIDEO_FRAMES

from .bridge import (
    CATEGORY, OmniSyncAudio, OmniSyncAudioEncoderType, OmniSyncAudioType, audio_from_comfy, audio_to_comfy,
)
from .feedback import HIDDEN, Feedback
from .widgets import check_choices, shared_inputs

COMFY_WHISPER_CHUNK_S = 30  # ComfyUI's AudioEncoderEncode pads/cuts Whisper input to 30 s


def _comfy_encoder_features(encoded: dict, wave16k_samples: int):
    """AUDIO_ENCODER_OUTPUT → ((N_feat, L, D) features at 50 Hz, silence feature (L, D), report).

    The core AudioEncoderEncode node returns {"encoded_audio": (B, 1500, D), "encoded_audio_all_layers":
    tuple of L (B, 1500, D), "audio_samples": samples at 16 kHz}; the input was zero-padded to 30 s,
    so positions past the audio encode silence.
    """
    from omnisync_core.audio.features import FEATURE_RATE_HZ, SAMPLE_RATE_HZ

    if not isinstance(encoded, dict) or "encoded_audio_all_layers" not in encoded:
        raise OmniSyncError(
            "encoded_audio must be the AUDIO_ENCODER_OUTPUT of ComfyUI's Audio Encoder Encode node (Whisper "
            "large-v3); wav2vec2 outputs are not supported by OmniSync models."
        )
    samples = int(encoded.get("audio_samples", wave16k_samples))
    if samples > COMFY_WHISPER_CHUNK_S * SAMPLE_RATE_HZ:
        raise OmniSyncError(
            f"ComfyUI's Audio Encoder Encode only encodes the first {COMFY_WHISPER_CHUNK_S} s of speech, and this "
            f"audio is {samples / SAMPLE_RATE_HZ:.1f} s; use Load Whisper Audio Encoder (any length) or cut the audio."
        )
    layers = torch.stack([torch.as_tensor(x) for x in encoded["encoded_audio_all_layers"]], dim=2)[0]  # (1500, L, D)
    layers = layers.float().cpu()
    n_valid = min(math.ceil(samples * FEATURE_RATE_HZ / SAMPLE_RATE_HZ), layers.shape[0])
    if n_valid < layers.shape[0]:
        silence = layers[-1]  # the last padded position: pure silence
    else:
        silence = torch.zeros_like(layers[0])
    return layers[:n_valid], silence, {"encoder": "comfy AudioEncoderEncode", "layers": layers.shape[1],
                                        "dim": layers.shape[2], "feature_frames": n_valid}


class OmniSyncAudioEncode(io.ComfyNode):
    DISPLAY_NAME = "OmniSync Audio Encode"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="OmniSyncAudioEncode",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description=(
                "Turns speech into Whisper features aligned to each output video frame, and decides the output "
                "length when video and speech differ (loop / ping-pong the video, or follow the video). The AUDIO "
                "output is the speech matched to that length (16 kHz mono)."
            ),
            inputs=[
                io.Audio.Input("audio", tooltip="Target speech (any sample rate, mono or stereo)."),
                *shared_inputs("fps"),
                io.Int.Input("num_frames", default=MIN_VIDEO_FRAMES, min=MIN_VIDEO_FRAMES, max=100000,
                             tooltip="Number of source video frames (ignored when images is connected)."),
                *shared_inputs("length_mode"),
                OmniSyncAudioEncoderType.Input("audio_encoder", optional=True,
                                               tooltip="Whisper from Load Whisper Audio Encoder (any audio length)."),
                io.Image.Input("images", optional=True,
                               tooltip="Source frames; when connected, their count replaces num_frames."),
                io.AudioEncoderOutput.Input("encoded_audio", optional=True,
                                            tooltip="Instead of audio_encoder: the output of ComfyUI's Audio Encoder "
                                                    "Encode (Whisper large-v3, up to 30 s), for models trained on "
                                                    "those features."),
            ],
            outputs=[
                OmniSyncAudioType.Output(display_name="omnisync_audio",
                                         tooltip="Per-frame speech features and the frame index plan (connect to "
                                                 "Noise Init and the Sampler)."),
                io.Audio.Output(display_name="audio", tooltip="The speech matched to the output length (trimmed or "
                                                              "padded with silence in follow_video mode)."),
            ],
            hidden=list(HIDDEN),
        )

    @classmethod
    def execute(cls, audio, fps, num_frames, length_mode, audio_encoder=None, images=None,
                encoded_audio=None) -> io.NodeOutput:
        from omnisync_core.audio.features import SAMPLE_RATE_HZ, align_features_to_frames
        from omnisync_core.pipelines.omnisync import encode_speech, prepare_audio

        check_choices(cls, length_mode=length_mode)
        if (audio_encoder is None) == (encoded_audio is None):
            raise OmniSyncError(
                "connect exactly one of audio_encoder (Load Whisper Audio Encoder) or encoded_audio (ComfyUI's "
                "Audio Encoder Encode output)."
            )
        T = int(images.shape[0]) if images is not None else int(num_frames)
        if T < MIN_VIDEO_FRAMES:
            raise OmniSyncError(f"Audio Encode needs at least {MIN_VIDEO_FRAMES} source frames, got a {T}-frame IMAGE "
                                "batch (a still image); connect a video, or repeat the image with Repeat Image Batch.")
        wave, sr, report = audio_from_comfy(audio)
        report["warnings"] = []
        feedback = Feedback(cls, cls.DISPLAY_NAME, report)
        if "batch" in report:
            feedback.warn(report["batch"] + ".")
        plan, wave_out = prepare_audio(T, fps, wave, sr, length_mode, on_warning=feedback.warn)
        T_out = int(plan.frame_indices.shape[0])
        report["length"] = plan.message

        if audio_encoder is not None:
            frame_feats, info = encode_speech(audio_encoder, wave_out, fps, T_out)
            L, D = int(audio_encoder.spec.num_layers), int(audio_encoder.spec.dim)
            source = "omnisync_whisper"
            report["encoder"] = getattr(audio_encoder.spec, "encoder", "whisper")
        else:
            feats, silence, enc_report = _comfy_encoder_features(encoded_audio, wave_out.shape[0])
            frame_feats, info = align_features_to_frames(feats, fps, T_out, silence_feature=silence)
            L, D = int(feats.shape[1]), int(feats.shape[2])
            source = "comfy_audio_encoder"
            report["encoder"] = enc_report
        report["alignment"] = info
        if not any(plan.message in line for line in feedback.lines):  # a length change was warned already
            feedback.info(plan.message)
        out = OmniSyncAudio(
            frame_features=frame_feats, num_layers=L, dim=D, frame_indices=plan.frame_indices.long(),
            fps=float(fps), waveform=wave_out, sample_rate=SAMPLE_RATE_HZ, source=source, report=report,
        )
        return io.NodeOutput(out, audio_to_comfy(wave_out, SAMPLE_RATE_HZ))
