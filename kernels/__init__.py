"""GPU kernels, each with a torch fallback."""
