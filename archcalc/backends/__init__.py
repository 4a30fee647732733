"""Optional backends, the only code that imports torch (lazily, when called): build a spec's network
(build.py, modules.py), verify a report against it, export it (source, ONNX), bench it, and import a torch
model into a spec (importer/). `archcalc.torch` is the public entry point."""
