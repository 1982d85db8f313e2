"""Data formats: the episode dataset (manifest, checksums, validator, Minari export) and video files.

Layer 1: knows files and arrays, never a model or an env. Recording from envs lives in
`worldgym.play.record`; training batches are cut in `worldgym.training.data`.
"""
