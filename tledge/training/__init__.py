"""Training: the fit loop, freezing, augmentation, k-fold, sweeps, reports and tracking (needs torch).

The job itself is the function `tledge.train` (tledge/api.py); data folders are tledge.datasets, the
networks tledge.models."""
