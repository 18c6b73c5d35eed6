"""Training: SimCLR with augmentation conditions, and linear probes."""
