"""Measuring models: fidelity against the real twin (``worldgym eval``), speed (``worldgym bench``), memory soak.

Layer 5: reads models, envs and worlds; nothing below imports it.
"""
