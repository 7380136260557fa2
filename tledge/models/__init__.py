"""The networks: the torchvision backbone registry, ImageNet weights, the torch device, and rebuilding a model
from a checkpoint. Shared by training, export and the runtime's torch backend, so it sits below them."""
