"""Training: data, backbones, freezing, fit loop, k-fold, reports (needs torch)."""
