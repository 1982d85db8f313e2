"""Policies that drive envs: built-in recording policies, saved (trained) policies, and the agent loader.

Layer 4: above the envs. `builtin` (random, sticky, mix, by name), `saved` (safetensors +
JSON policies, `load_policy`; public path `worldgym.policy_io`), `agents` (``--agent`` specs).
"""
