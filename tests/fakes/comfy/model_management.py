"""Fake of ``comfy.model_management``: CPU device, no-op memory management, the interrupt flag."""

import torch

interrupt_processing = False
calls = []  # (function name, args) — tests check that memory was managed


class InterruptProcessingException(Exception):
    pass


def get_torch_device():
    return torch.device("cpu")


def unet_offload_device():
    return torch.device("cpu")


def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                    force_full_load=False):
    calls.append(("load_models_gpu", [type(m).__name__ for m in models]))
    for m in models:
        m.load()


def should_use_bf16(device=None, model_params=0, prioritize_performance=True, manual_cast=False):
    return False


def should_use_fp16(device=None, model_params=0, prioritize_performance=True, manual_cast=False):
    return False


def free_memory(memory_required, device, keep_loaded=()):
    calls.append(("free_memory", memory_required))


def soft_empty_cache(force=False):
    calls.append(("soft_empty_cache", force))


def interrupt_current_processing(value=True):
    global interrupt_processing
    interrupt_processing = value


def throw_exception_if_processing_interrupted():
    global interrupt_processing
    if interrupt_processing:
        interrupt_processing = False
        raise InterruptProcessingException()
