"""What core Load VAE returns for Wan2.2_VAE.safetensors (``comfy.sd.VAE``), as far as the nodes see it: the
raw-latent layouts (``encode((T, H, W, 3)) -> (1, 48, F, h, w)``, ``decode -> (1, T, H, W, 3)``, from
tests/tiny.py's weight-free TinyWan22VAE), ``latent_channels``, and a record of every call."""

from tiny import TinyWan22VAE


class FakeComfyWan22VAE(TinyWan22VAE):
    latent_channels = 48

    def __init__(self):
        self.calls = []  # (kind, shape) of every encode / decode

    def encode(self, frames):
        self.calls.append(("encode", tuple(frames.shape)))
        return super().encode(frames)

    def decode(self, latents):
        self.calls.append(("decode", tuple(latents.shape)))
        return super().decode(latents)
