"""The environments: Gymnasium single and vector envs, the TorchRL env, wrappers, real twins, start banks, registration.

Layer 3: envs own the Gymnasium/TorchRL contracts (spaces, seeding, episode counters,
numpy/torch conversion, rendering) and drive `worldgym.engine.WorldModel`; they never touch
the cache themselves.
"""
