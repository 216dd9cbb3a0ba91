"""Fake of ``comfy.model_patcher.ModelPatcher`` (ComfyUI 0.3.64) for what the nodes use: its devices and size,
and ``load`` with the real partial-loading rule: the layers that have ``comfy_cast_weights`` (``comfy.ops``) and do
not fit ``lowvram_model_memory`` stay on the offload device with ``comfy_cast_weights`` on (cast per call); every
other module with its own parameters is moved when it fits; a model-wide ``.to`` only with ``full_load``."""


import comfy.model_management


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model, self.load_device, self.offload_device = model, load_device, offload_device
        self.size = size
        self.parent = None
        if getattr(self.model, "device", None) is None:
            self.model.device = offload_device
        self.model.model_loaded_weight_memory = 0
        self.model.model_lowvram = False
        self.model_size()

    def model_size(self):
        if self.size <= 0:
            self.size = comfy.model_management.module_size(self.model)
        return self.size

    def loaded_size(self):
        return self.model.model_loaded_weight_memory

    def model_dtype(self):
        return getattr(self.model, "get_dtype", lambda: None)()

    def current_loaded_device(self):
        return self.model.device

    def is_clone(self, other):
        return other is self

    def _load_list(self):
        loading = []
        for n, m in self.model.named_modules():
            own = [name for name, _ in m.named_parameters(recurse=False)]
            if any(name not in own for name, _ in m.named_parameters(recurse=True)):
                continue  # a module with children that hold parameters: its own ones are not moved here
            if hasattr(m, "comfy_cast_weights") or own:
                loading.append((comfy.model_management.module_size(m), n, m))
        return loading

    def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False):
        mem_counter, lowvram_counter = 0, 0
        for module_mem, n, m in sorted(self._load_list(), key=lambda x: (x[0], x[1]), reverse=True):
            if not full_load and hasattr(m, "comfy_cast_weights") and mem_counter + module_mem >= lowvram_model_memory:
                lowvram_counter += 1
                if not hasattr(m, "prev_comfy_cast_weights"):
                    m.prev_comfy_cast_weights = m.comfy_cast_weights
                    m.comfy_cast_weights = True
                continue
            if hasattr(m, "prev_comfy_cast_weights"):
                m.comfy_cast_weights = m.prev_comfy_cast_weights
                del m.prev_comfy_cast_weights
            if full_load or mem_counter + module_mem < lowvram_model_memory:
                mem_counter += module_mem
                m.to(device_to)
        self.model.model_lowvram = lowvram_counter > 0
        if not self.model.model_lowvram and full_load:
            self.model.to(device_to)
            mem_counter = self.model_size()
        self.model.device = device_to
        self.model.model_loaded_weight_memory = mem_counter

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
        if not self.model.model_lowvram and self.model.model_loaded_weight_memory > 0:
            return 0
        current = self.model.model_loaded_weight_memory
        self.load(device_to, lowvram_model_memory=current + extra_memory,
                  full_load=current + extra_memory > self.model_size())
        return self.model.model_loaded_weight_memory - current

    def detach(self, unpatch_all=True):
        self.model.to(self.offload_device)
        self.model.device = self.offload_device
        self.model.model_loaded_weight_memory = 0
        return self.model
