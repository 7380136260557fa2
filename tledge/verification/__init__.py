"""Verification that travels: the parity pack written beside every export, the environment a verdict was
obtained in, the verdict files next to the artifacts, and `tledge verify` that re-runs parity on any device
with the runtime-only install (no torch, no dataset)."""
