"""Multiscale pyramids of arrays larger than memory.

``levels``  :func:`~poolkit.multiscale.levels.pyramid`: the levels of a NumPy or Dask array
``ngff``    :func:`~poolkit.multiscale.ngff.write_pyramid`: OME-Zarr output

Dask and Zarr are imported only when used.
"""
