"""Neural-network layers (submodules are imported explicitly or via `pz.nn`)."""
