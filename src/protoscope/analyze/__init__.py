"""Analyses of stored checkpoints: probe-set activations, RSA trajectories, alignment."""
