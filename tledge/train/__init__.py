"""Training: data, backbones, freezing, fit loop, k-fold, reports (needs torch).

`tledge.train(data, **options)` calls `tledge.api.train` (this package is callable, see tledge/_callable.py).
"""

from tledge._callable import make_callable

make_callable(__name__, "tledge.api:train")
