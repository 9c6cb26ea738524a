"""LoRA engine: adapter registry, stacks, per-request application, mixed-stack batching, training."""
