"""tledge: image folder to a fast, verified classifier on an edge device."""

__version__ = "0.1.0"
