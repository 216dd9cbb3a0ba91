"""Fake of ``comfy.model_management``: CPU device, the list of loaded models and ``load_models_gpu`` (each model
loaded through its patcher's ``partially_load``, as the real one does), no-op memory freeing, the interrupt flag."""

import torch

interrupt_processing = False
calls = []  # (function name, args) — tests check that memory was managed
current_loaded_models = []  # LoadedModel, the most recently loaded first (as ComfyUI's)
LOWVRAM_MODEL_MEMORY = 0  # tests set bytes > 0 to load as ComfyUI does when a model does not fit (0: all fits)


class InterruptProcessingException(Exception):
    pass


def get_torch_device():
    return torch.device("cpu")


def unet_offload_device():
    return torch.device("cpu")


def module_size(module):
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


class LoadedModel:
    def __init__(self, model):
        self.model, self.device, self.currently_used = model, model.load_device, True


def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                    force_full_load=False):
    calls.append(("load_models_gpu", [type(m).__name__ for m in models]))
    for m in models:
        for i, loaded in enumerate(current_loaded_models):
            if loaded.model is m:
                current_loaded_models.pop(i)
                break
        budget = 1e32 if force_full_load or not LOWVRAM_MODEL_MEMORY else LOWVRAM_MODEL_MEMORY
        m.partially_load(m.load_device, budget, force_patch_weights=force_patch_weights)
        current_loaded_models.insert(0, LoadedModel(m))


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
