"""Layer 2: the engines that run a validated call on a backend.

``eager``   validation of a call (``prepare``) and the NumPy engine (``run_forward``, ``run_backward``)
``lazy``    the Dask engine: the same calls, chunk by chunk, bit for bit the eager result
"""
