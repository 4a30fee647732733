"""Optional backends. `backends.torch` is the one module that imports torch, and only when called."""
