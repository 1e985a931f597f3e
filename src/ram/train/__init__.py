"""Training RAM: losses, resumable trainer, checkpoints."""
