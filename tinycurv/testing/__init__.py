"""Testing aids shipped with the package (host-side by design: NumPy underneath).

``CUPY_STAND_IN`` is the folder of a strict CPU stand-in for CuPy (``cupy``, ``cupyx``): put it
first on ``PYTHONPATH`` with ``TINYCURV_BACKEND=cupy`` and the library runs its CuPy code paths
on the CPU, raising where CuPy would (a NumPy array meeting a device array, an implicit
device-to-host conversion) and counting every device-to-host transfer::

    PYTHONPATH=$(python -c "import tinycurv.testing as t; print(t.CUPY_STAND_IN)") \
        TINYCURV_BACKEND=cupy pytest -o addopts= tests

It ships with the package, so tutorial 08 §6 runs from a plain ``pip install``.
"""

from pathlib import Path

CUPY_STAND_IN = Path(__file__).resolve().parent / "cupy_stand_in"

__all__ = ["CUPY_STAND_IN"]
