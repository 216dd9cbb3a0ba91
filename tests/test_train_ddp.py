"""Two gloo processes on CPU: DDP equals one process on the combined batch; FSDP smoke run.

The FSDP run (two spawns of two processes, with a resume) is marked ``slow`` and left out of the default
run: ``python -m pytest -q -m slow tests/test_train_ddp.py`` runs it. Each worker uses one intra-op thread,
so two ranks do not oversubscribe two shared cores.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_train import tiny_config, tiny_source  # noqa: E402

WORLD = 2
STEPS = 3
GLOBAL_BATCH = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def _manual_steps(model, core, config, world: int, rank: int):
    """STEPS optimiser steps on a global batch drawn identically everywhere; this rank takes its slice."""
    from omnisync_core.train import trainer
    from omnisync_core.train.batches import Batch, draw_batch
    opt = torch.optim.AdamW(core.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(7)
    per = GLOBAL_BATCH // world
    for step in range(STEPS):
        batch = draw_batch(tiny_source(), GLOBAL_BATCH, config, gen)
        noise = torch.randn(batch.target.shape, generator=gen)
        part = slice(rank * per, (rank + 1) * per)
        mine = Batch(batch.sigma[part], batch.paired[part], batch.source[part], batch.target[part],
                     batch.audio[part], None)
        for group in opt.param_groups:
            group["lr"] = trainer.lr_at(step, config)
        loss, _ = trainer.flow_matching_loss(model, mine, noise[part])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(core.parameters(), config.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {k: v.detach().clone() for k, v in core.state_dict().items()}


def _ddp_worker(rank: int, port: int, config, out: str) -> None:
    from omnisync_core.train import distributed as D
    from omnisync_core.train import trainer
    _env(rank, port)
    info = D.init_distributed()
    try:
        torch.manual_seed(config.seed)
        core = trainer.build_model(config)
        model = D.wrap_model(core, config, info)
        assert model is not core                      # a DDP wrapper
        save_file(_manual_steps(model, core, config, WORLD, rank), os.path.join(out, f"manual_rank{rank}.safetensors"))
    finally:
        D.cleanup()


def _train_worker(rank: int, port: int, config, out: str) -> None:
    from omnisync_core.train import distributed as D
    from omnisync_core.train import trainer
    _env(rank, port)

    def grab(model, step):                            # the validation hook sees the live model
        weights = D.full_model_state(model)
        if rank == 0 or not D.is_fsdp(model):
            save_file({k: v.contiguous() for k, v in weights.items()}, os.path.join(out, f"loop_rank{rank}.safetensors"))
        return {"step_seen": float(step)}
    try:
        trainer.train(config, tiny_source(), validate=grab)
    finally:
        D.cleanup()


def _spawn(fn, config, out):
    mp.spawn(fn, args=(_free_port(), config, out), nprocs=WORLD, join=True)


def test_ddp_two_ranks_equal_one_process_on_the_combined_batch(tmp_path):
    from omnisync_core.train import trainer
    config = tiny_config(tmp_path, lr=1e-2, warmup_steps=0, max_steps=STEPS, grad_clip=0.5)
    _spawn(_ddp_worker, config, str(tmp_path))
    r0 = load_file(str(tmp_path / "manual_rank0.safetensors"))
    r1 = load_file(str(tmp_path / "manual_rank1.safetensors"))

    torch.manual_seed(config.seed)
    core = trainer.build_model(config)
    initial = {k: v.clone() for k, v in core.state_dict().items()}
    single = _manual_steps(core, core, config, world=1, rank=0)
    moved = False
    for k in single:
        assert torch.equal(r0[k], r1[k]), k
        assert torch.allclose(r0[k], single[k], atol=1e-5, rtol=0), (k, (r0[k] - single[k]).abs().max())
        moved |= not torch.equal(single[k], initial[k])
    assert moved


def test_ddp_training_loop_keeps_ranks_identical_and_rank0_writes(tmp_path):
    config = tiny_config(tmp_path, max_steps=STEPS, val_every=STEPS, ckpt_every=STEPS)
    _spawn(_train_worker, config, str(tmp_path))
    r0 = load_file(str(tmp_path / "loop_rank0.safetensors"))
    r1 = load_file(str(tmp_path / "loop_rank1.safetensors"))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    files = sorted(os.listdir(config.out_dir))
    assert files == ["omnisync_ema.safetensors", "optim.safetensors", "state.safetensors", "train.csv", "val.csv"]
    with safe_open(os.path.join(config.out_dir, "optim.safetensors"), framework="pt") as f:
        assert {"rng.generator.0", "rng.generator.1"} <= set(f.keys())   # each rank resumes its own stream
        assert f.metadata()["step"] == str(STEPS)
    with open(os.path.join(config.out_dir, "train.csv")) as f:
        assert len(f.readlines()) == 1 + STEPS    # one writer


@pytest.mark.slow
def test_fsdp_smoke_on_gloo(tmp_path):
    config = tiny_config(tmp_path, parallel="fsdp", max_steps=2, val_every=2, ckpt_every=2)
    _spawn(_train_worker, config, str(tmp_path))
    state = load_file(os.path.join(config.out_dir, "state.safetensors"))
    full = load_file(str(tmp_path / "loop_rank0.safetensors"))
    for k, v in full.items():
        assert state[f"model.{k}"].shape == v.shape and torch.equal(state[f"model.{k}"], v), k
        if f"ema.{k}" in state:                  # EMA covers parameters, not buffers
            assert state[f"ema.{k}"].shape == v.shape
    assert os.path.exists(os.path.join(config.out_dir, "omnisync_ema.safetensors"))
    # resume under FSDP: sharded weights, EMA and optimiser state come back from the full tensors
    _spawn(_train_worker, dataclasses.replace(config, max_steps=3, val_every=3), str(tmp_path))
    with open(os.path.join(config.out_dir, "train.csv")) as f:
        assert [int(line.split(",")[0]) for line in f.readlines()[1:]] == [1, 2, 3]
