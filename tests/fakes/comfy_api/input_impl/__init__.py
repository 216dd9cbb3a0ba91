class VideoFromComponents:
    def __init__(self, components):
        self._components = components

    def get_components(self):
        return self._components

    def get_dimensions(self):
        return self._components.images.shape[2], self._components.images.shape[1]
