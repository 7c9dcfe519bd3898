"""Ready-made model families (MLPs, transformers); import submodules explicitly."""
