"""Analyses of stored checkpoints: stimulus-set activations, RSA trajectories, alignment."""
