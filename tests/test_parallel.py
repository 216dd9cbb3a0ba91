"""Sequence-parallel X-Dub DiT (model/parallel.py, yunchang's Ulysses attention) over gloo on the CPU:
2 processes equal 1 process within 1e-5 for a forward and a guided step, on the reference's scaled-down DiT."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors import safe_open

pytest.importorskip("yunchang")

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "xdub")
WORLD = 2
ATOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _case():
    with safe_open(os.path.join(FIXTURES, "sampler_step.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, int(f.metadata()["step"])


def _run(parallel: bool):
    """(forward at batch 3 with per-sample timesteps, one guided step) of the float32 fixture DiT."""
    from omnisync_core.model.parallel import enable_sequence_parallel
    from omnisync_core.model.xdub_weights import load_xdub_model
    from omnisync_core.sampling.schedule import FlowMatchSchedule
    from omnisync_core.sampling.xdub import XDubOptions, guided_step

    t, k = _case()
    model = load_xdub_model(os.path.join(FIXTURES, "dit_tiny_weights.safetensors"), dtype=torch.float32,
                            head_dim=32, audio_head_dim=16)
    sp = enable_sequence_parallel(model) if parallel else None
    B = 3
    sig = FlowMatchSchedule(30, 5.0).sigmas
    with torch.no_grad():
        v = model(t["x_in"][None].expand(B, -1, -1, -1, -1), torch.tensor([700.0, 400.0, 100.0]),
                  source=t["reference"][None], audio=t["audio"][None], text=t["text"][None], motion_frames=2)
        x, _ = guided_step(model, t["x_in"].clone(), float(sig[k]), float(sig[k + 1]), t["reference"], t["noise"],
                           t["audio"], t["text"], XDubOptions(), t["motion_latents"])
    if sp is not None:
        sp.remove()
    return v, x


def _worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        v, x = _run(parallel=True)
        torch.save({"v": v, "x": x}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, start_method="spawn")
    v1, x1 = _run(parallel=False)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        dv, dx = float((got["v"] - v1).abs().max()), float((got["x"] - x1).abs().max())
        print(f"rank {rank}: forward max |2 procs − 1| = {dv:.3g}, guided step {dx:.3g}")
        assert dv <= ATOL and dx <= ATOL
    assert float(v1.abs().max()) > 0.1  # a network that predicts something


def test_refused_without_torch_distributed():
    from omnisync_core.errors import OmniSyncError
    from omnisync_core.model.config import preset
    from omnisync_core.model.xdub_dit import XDubDiT
    from omnisync_core.model.parallel import enable_sequence_parallel

    with pytest.raises(OmniSyncError, match="torchrun"):
        enable_sequence_parallel(XDubDiT(preset("tiny-xdub"), device="meta"))
