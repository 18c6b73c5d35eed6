"""Image synthesis: batched evolution strategies that search for activation-maximizing inputs."""
