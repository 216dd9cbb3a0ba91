"""Block swap: swapped blocks get a fresh device copy of their weights for their forward only, and the
outputs equal the model's without the swap, bit for bit (on the CPU the "device" is the CPU too, so
the copies are CPU tensors; the CUDA test runs where a GPU exists)."""

import pytest
import torch

from omnisync_core.errors import OmniSyncError
from omnisync_core.model.config import preset
from omnisync_core.model.dit import OmniSyncDiT
from omnisync_core.model.xdub_dit import XDubDiT
from omnisync_core.model.offload import enable_block_swap


def randomised(name):
    torch.manual_seed(0)
    cfg = preset(name, num_layers=3)
    model = (XDubDiT if cfg.source_layout == "sequence" else OmniSyncDiT)(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # no zero-init left: every branch matters
    return model


def xdub_inputs(device="cpu"):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 48, 3, 4, 4, generator=g)
    kw = dict(source=torch.randn(2, 48, 3, 4, 4, generator=g), audio=torch.randn(2, 3, 8, 40, generator=g),
              text=torch.randn(2, 5, 16, generator=g), motion_frames=1)
    return x.to(device), torch.tensor([600.0, 200.0]), {k: v.to(device) if torch.is_tensor(v) else v
                                                        for k, v in kw.items()}


@pytest.mark.parametrize("resident", [0, 1, 3])
def test_swap_gives_identical_outputs_and_moves_only_during_forward(resident):
    model = randomised("tiny-xdub")
    x, t, kw = xdub_inputs()
    with torch.no_grad():
        expected = model(x, t, **kw)
    before = {name: p.data_ptr() for name, p in model.named_parameters()}

    swap = enable_block_swap(model, "cpu", resident_blocks=resident)
    assert swap.swapped == list(range(resident, 3))
    stored = {i: model.blocks[i].self_attn.q.weight.data_ptr() for i in range(3)}
    seen = {}

    def spy(i):
        def hook(module, args):
            seen[i] = module.self_attn.q.weight.data_ptr()
        return hook
    # registered after the swap's own pre-hooks, so they see the weights the block computes with
    spies = [model.blocks[i].register_forward_pre_hook(spy(i)) for i in range(3)]
    with torch.no_grad():
        got = model(x, t, **kw)
    assert torch.equal(got, expected)
    for i in range(3):
        if i < resident:   # resident: the same tensor throughout
            assert seen[i] == stored[i]
        else:              # swapped: a fresh copy during forward, the CPU store again afterwards
            assert seen[i] != stored[i] and model.blocks[i].self_attn.q.weight.data_ptr() == stored[i]
    # non-block weights were moved once ("cpu" -> "cpu" keeps them), never copied per forward
    assert model.head.head.weight.data_ptr() == before["head.head.weight"]

    for s in spies:
        s.remove()
    swap.remove()
    with torch.no_grad():
        assert torch.equal(model(x, t, **kw), expected)


def test_swap_works_for_the_omnisync_layout():
    model = randomised("tiny")
    g = torch.Generator().manual_seed(2)
    x, src = torch.randn(1, 12, 2, 4, 4, generator=g), torch.randn(1, 12, 2, 4, 4, generator=g)
    audio, text = torch.randn(1, 2, 5, 40, generator=g), torch.randn(1, 3, 32, generator=g)
    with torch.no_grad():
        expected = model(x, 400.0, source=src, audio=audio, text=text)
        swap = enable_block_swap(model, "cpu", resident_blocks=1)
        assert torch.equal(model(x, 400.0, source=src, audio=audio, text=text), expected)
    swap.remove()


def test_swap_refusals():
    model = randomised("tiny-xdub")
    with pytest.raises(OmniSyncError, match=r"resident_blocks must be an int in \[0, 3\]"):
        enable_block_swap(model, "cpu", resident_blocks=4)
    with pytest.raises(OmniSyncError, match=r"needs a model made of blocks.*offload none"):
        enable_block_swap(torch.nn.Linear(2, 2), "cpu")
    swap = enable_block_swap(model, "cpu", resident_blocks=0)
    x, t, kw = xdub_inputs()
    with pytest.raises(OmniSyncError, match="torch.no_grad"):
        model(x, t, **kw)
    swap.remove()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_swap_on_cuda_matches_and_saves_memory():
    model = randomised("tiny-xdub")
    x, t, kw = xdub_inputs("cuda")
    with torch.no_grad():
        expected = model.to("cuda")(x, t, **kw)
    model.to("cpu")
    torch.cuda.synchronize()
    resident_before = torch.cuda.memory_allocated()
    swap = enable_block_swap(model, "cuda", resident_blocks=0)
    block_bytes = sum(p.numel() * p.element_size() for p in model.blocks[0].parameters())
    on_device = torch.cuda.memory_allocated() - resident_before
    all_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert on_device < all_bytes - 2 * block_bytes  # no block's weights resident (allocator rounding aside)
    with torch.no_grad():
        got = model(x, t, **kw)
    torch.cuda.synchronize()
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    assert all(p.device.type == "cpu" for p in model.blocks.parameters())
    swap.remove()
