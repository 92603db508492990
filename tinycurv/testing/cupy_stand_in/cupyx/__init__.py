import contextlib

import cupy as _cp
import numpy as _np


@contextlib.contextmanager
def errstate(**kwargs):
    yield


def scatter_add(a, slices, value):
    _np.add.at(a._a, _cp._unwrap(slices), _cp._unwrap(value))
