"""The numba backend: loop kernels compiled with Numba (the chapter's method 1).

``loops``    the backend's side of the contract (:mod:`poolkit.backends`)
``kernels``  generic kernels for every geometry
``fast``     specialised kernels for common channels-first windows
``simd``     explicit vector blocks (LLVM IR) used by ``fast``
``jit``      compiling on demand, in the background, with a disk cache
``cache``    where compiled kernels are kept
``warmup``   compiling ahead of time (``poolkit warmup``)
"""
