"""The world model's networks and their pieces; no episode state, no env, no pixels-to-screen.

Layer 1 (imports only `worldgym.config_io`). One concept per module:

- `actions`: action spaces -> conditioning tensors (discrete, multi-key, continuous);
- `autoencoder`: frames (B, H, W, 3) uint8 <-> latents (B, N, C);
- `rope`, `transformer`, `dynamics`: the block-causal transformer and its heads;
- `cache`: the KV cache object the engine owns (sink + rolling window, per-row reset);
- `sampler`: the flow-matching schedule and the few-step loop (explicit generator);
- `networks`: `WorldModelConfig` and `Model` (autoencoder + dynamics + start bank);
- `checkpoint`: safetensors + JSON config + sha256, atomic writes, safe loads.
- `hardware`: what this machine runs fastest: ``dtype="auto"`` and torch's thread count.
"""
