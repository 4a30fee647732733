"""TOML text -> Spec (read.py, the one module that reads TOML), and a spec's blocks unrolled into the leaf
layers of a graph (graph.py). Knows the layer kinds; knows nothing of shapes' results or memory."""
