"""Multiscale pyramids of arrays larger than memory.

``spec``     settings: validation, per-level factor schedules, level shapes
``reduce``   :func:`~poolkit.multiscale.reduce.reduce_levels`: one block's levels (the kernels)
``levels``   :func:`~poolkit.multiscale.levels.pyramid`: the levels of a NumPy or Dask array
``plan``     the region plan of a pyramid on disk, sized by a memory target
``chunkio``  Zarr chunk files read and written directly (zarr-python for other layouts)
``sources``  inputs: Zarr, OME-Zarr, TIFF, .npy, NumPy and Dask arrays, read box by box
``regions``  region tasks on threads, processes or a Dask cluster; the journal of finished tasks
``ngff``     :func:`~poolkit.multiscale.ngff.write_pyramid`: OME-Zarr output, resumable

Dask and Zarr are imported only when used.
"""
