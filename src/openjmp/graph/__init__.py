"""Records -> GemNet-OC graphs and batches (pure torch plus vesin)."""
