"""Training world models: batches from datasets, the losses of each stage, the stage loop, named recipes.

Layer 5: `data` (sequence batches), `losses` (autoencoder, teacher forcing, self-forcing,
decoder, heads), `train` (``worldgym train``: stages, checkpoints, resume, DDP), `recipes`.
"""
