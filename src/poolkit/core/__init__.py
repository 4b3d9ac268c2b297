"""Layer 0: what a pooling *is*, in NumPy only -- no kernels, no Dask, no user-facing functions.

``args``        argument helpers shared by every module (ints, bools, axes, formats)
``geometry``    windows along one axis, output sizes, padding (the one place)
``layout``      the canonical ``(B, D, H, W, C)`` layout and the dtype policy
``plan``        :class:`~poolkit.core.plan.Plan`, what every backend receives
``windows``     the window descriptions the front door asks for
``threads``     poolkit's thread count
"""
