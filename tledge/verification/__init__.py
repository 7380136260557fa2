"""Verification that travels: parity (the judge shared with export) and `tledge verify`, which re-runs parity
from the pack on any device with the runtime-only install (no torch, no dataset). The records it reads and
writes are tledge.provenance."""
