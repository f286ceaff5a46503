"""Writers of the native dataset formats the demo sets stand in for (no torch, no PyG)."""
