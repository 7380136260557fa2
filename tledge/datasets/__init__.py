"""Labelled image folders: scanning, layouts, splits and the data report. Shared by training, evaluation,
parity and bench, so it sits below all of them. No torch."""
