"""Spec -> Network: every layer's shapes, parameters and MACs (engine.py, network.py), receptive fields
(receptive.py) and checkpointed regions (checkpoint.py). Knows no bytes: memory/ reads a Network."""
