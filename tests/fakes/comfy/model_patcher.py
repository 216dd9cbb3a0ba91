"""Fake of ``comfy.model_patcher``: a ModelPatcher that records its devices and moves the model when loaded."""



class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model, self.load_device, self.offload_device = model, load_device, offload_device
        self.size = size or sum(p.numel() * p.element_size() for p in model.parameters())

    def model_size(self):
        return self.size

    def model_dtype(self):
        return next(self.model.parameters()).dtype

    def current_loaded_device(self):
        return next(self.model.parameters()).device

    def load(self, device_to=None):
        self.model.to(device_to or self.load_device)

    def detach(self):
        self.model.to(self.offload_device)
