"""Write a pyramid as an OME-NGFF (OME-Zarr) multiscale image.

``write_pyramid(x, store)`` pools ``x`` with :func:`poolkit.pyramid` and
writes the levels as the arrays ``0, 1, ...`` of a Zarr group, then the
``multiscales`` metadata, last. OME-NGFF 0.4 on Zarr format 2 (default: the
version most viewers read) or 0.5 on Zarr format 3. Needs the ``zarr`` extra
(``pip install 'poolkit[zarr]'``); Dask input also needs ``dask``.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..core.layout import as_input_array, is_dask_array
from .levels import DEFAULT_BLOCK_BYTES, _dask_pyramid
from .spec import check_levels as _check_levels, default_levels as _default_levels, is_int as _is_int, normalize as _normalize

__all__ = ["write_pyramid", "VERSIONS"]

VERSIONS = ("0.4", "0.5")
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
# Attribute that marks a group this module is still writing (an interrupted write keeps it).
_MARKER = "poolkit_incomplete"


def _axes_names(axes_names, ndim: int) -> str:
    if not 2 <= ndim <= 5:
        raise ValueError(f"OME-NGFF images have 2 to 5 axes, but `x` has ndim={ndim}.")
    if axes_names is None:
        return "tczyx"[-ndim:]
    names = "".join(axes_names) if isinstance(axes_names, (list, tuple)) else axes_names
    if (not isinstance(names, str) or len(names) != ndim or len(set(names)) != ndim
            or any(n not in _AXIS_TYPES for n in names)
            or list(names) != [n for n in "tczyx" if n in names]
            or sum(_AXIS_TYPES[n] == "space" for n in names) < 2):
        raise ValueError(f"`axes_names` must name the {ndim} axes of `x` with letters of 'tczyx' in that "
                         f"order, at least two of z, y, x (e.g. {'tczyx'[-ndim:]!r}), but got "
                         f"axes_names={axes_names!r}.")
    return names


def _per_axis(value, ndim: int, name: str, kind=float) -> Optional[tuple]:
    if value is None:
        return None
    seq = (value,) * ndim if isinstance(value, (int, float, np.integer, np.floating)) else value
    try:
        out = tuple(kind(v) for v in seq)
    except (TypeError, ValueError):
        out = ()
    if len(out) != ndim or isinstance(value, (str, bool)) or any(isinstance(v, bool) for v in seq) \
            or any(not v > 0 for v in out):
        raise ValueError(f"`{name}` must be a positive number or one per axis ({ndim}), "
                         f"but got {name}={value!r}.")
    if kind is int and any(not _is_int(v) for v in seq):
        raise ValueError(f"`{name}` must be ints, but got {name}={value!r}.")
    return out


def _default_chunks(shape, names: str, x) -> tuple:
    if is_dask_array(x):
        return tuple(max(c) for c in x.chunks)
    space = [i for i, n in enumerate(names) if _AXIS_TYPES[n] == "space"]
    side = 2 ** (21 // len(space))          # ~2 million elements: 1024**2 or 128**3
    return tuple(min(n, side) if i in space else 1 for i, n in enumerate(shape))


def _existing(store) -> Optional[str]:
    """"complete", "incomplete" (our interrupted write) or "other" for what ``store`` holds; None if empty."""
    import zarr

    if isinstance(store, (str, os.PathLike)):
        path = os.fspath(store)
        if not os.path.exists(path):
            return None
        if os.path.isfile(path) or os.listdir(path) == []:
            return "other" if os.path.isfile(path) else None
    try:
        group = zarr.open_group(store, mode="r")
    except Exception:
        return None if not isinstance(store, (str, os.PathLike)) else "other"
    attrs = group.attrs.asdict()
    if _MARKER in attrs:
        return "incomplete"
    return "complete" if ("multiscales" in attrs or "ome" in attrs) else "other"


def _multiscales(names: str, spec, n_levels: int, scale0, method: str, version: str, name: str,
                 units: Optional[Dict[str, str]]) -> dict:
    axes: List[dict] = []
    for n in names:
        entry = {"name": n, "type": _AXIS_TYPES[n]}
        if units and n in units:
            entry["unit"] = units[n]
        axes.append(entry)
    datasets = []
    for k in range(n_levels):
        f = [spec.factors[i] ** k for i in range(len(names))]
        # A window of f pixels starting at pixel 0 is centred at (f - 1) / 2 in level-0 pixels;
        # "nearest" keeps the first pixel, so no shift.
        shift = [0.0 if method == "nearest" else (fi - 1) / 2 * s for fi, s in zip(f, scale0)]
        datasets.append({"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": [fi * s for fi, s in zip(f, scale0)]},
            {"type": "translation", "translation": shift}]})
    ms = {"axes": axes, "datasets": datasets, "name": name, "type": method,
          "metadata": {"method": "poolkit.pyramid", "kwargs": {
              "factor": list(spec.factors), "method": method, "edge": spec.edge}}}
    if version == "0.4":
        return {"multiscales": [{"version": "0.4", **ms}]}
    return {"ome": {"version": "0.5", "multiscales": [ms]}}


def write_pyramid(x, store, *, levels: Optional[int] = None, factor: Union[int, Sequence[int]] = 2,
                  method: str = "mean", axes_names: Union[None, str, Sequence[str]] = None,
                  chunks: Union[None, int, Sequence[int]] = None, overwrite: bool = False,
                  edge: str = "partial", scale: Union[None, float, Sequence[float]] = None,
                  units: Optional[Dict[str, str]] = None, version: str = "0.4", name: str = "image",
                  max_block_bytes: int = DEFAULT_BLOCK_BYTES) -> list:
    """Pool ``x`` into a pyramid and write it as an OME-NGFF multiscale image.

    Parameters
    ----------
    x : array_like or dask.array.Array, shape (*S), 2 to 5 axes
        Level 0. A Dask array is computed chunk by chunk with the current Dask
        scheduler (a ``distributed.Client`` if one is active).
    store : str, os.PathLike or zarr store
        Where the Zarr group goes, e.g. ``"image.ome.zarr"``.
    levels, factor, method, edge, max_block_bytes
        As for :func:`poolkit.pyramid`; ``factor`` is one int or one per space
        axis. ``levels=None``: until the space axes fit one chunk of ``chunks``.
    axes_names : str or sequence of str, optional
        One letter per axis from ``"tczyx"``, in that order, e.g. ``"cyx"``.
        Default: the last ``x.ndim`` letters (``"yx"``, ``"zyx"``, ``"czyx"``).
        Only the space axes (z, y, x) are pooled.
    chunks : int or tuple of ints, optional
        Chunk lengths of every level's Zarr array (clipped to its shape).
        Default: ``x``'s Dask chunks; for NumPy input 1024 per space axis in
        2-D, 128 in 3-D, 1 on other axes.
    overwrite : bool
        Replace what ``store`` holds. Without it an existing store raises
        ``FileExistsError``, except the remains of an interrupted
        ``write_pyramid``, which are replaced.
    scale : float or tuple of floats, optional
        Level 0's pixel size per axis (default 1).
    units : dict, optional
        Units per axis name, e.g. ``{"y": "micrometer", "x": "micrometer"}``.
    version : {"0.4", "0.5"}
        OME-NGFF version: "0.4" on Zarr format 2, "0.5" on Zarr format 3.
    name : str
        The multiscale's name.

    Returns
    -------
    list of tuples
        The shapes of the levels written, level 0 first.

    Notes
    -----
    Level ``k``'s ``coordinateTransformations`` are ``scale = scale * factor**k``
    and ``translation = (factor**k - 1) / 2 * scale`` on the space axes (the
    centre of the window, in level-0 units; 0 for "nearest").

    The metadata is written last: the group first gets a
    ``"poolkit_incomplete"`` attribute, then the arrays and their data, then
    its attributes are replaced by the ``multiscales`` metadata in one write.
    An interrupted write therefore leaves no ``multiscales`` (readers do not
    take it for an image), and running again replaces it.

    Dask chunks are aligned to the Zarr chunks (the input is rechunked to
    ``chunks``), so tasks never write the same Zarr chunk.

    Examples
    --------
    >>> import numpy as np, tempfile, os, poolkit
    >>> path = os.path.join(tempfile.mkdtemp(), "image.ome.zarr")
    >>> poolkit.write_pyramid(np.ones((300, 200), np.uint16), path, chunks=128)
    [(300, 200), (150, 100), (75, 50)]
    """
    lazy = is_dask_array(x)
    if not lazy:
        x = as_input_array(x)
    elif not x.dtype.isnative:            # e.g. '>u2' from a file: the kernels know native dtypes
        x = x.astype(x.dtype.newbyteorder("="))
    shape = tuple(x.shape)
    names = _axes_names(axes_names, len(shape))
    space = tuple(i for i, n in enumerate(names) if _AXIS_TYPES[n] == "space")
    spec = _normalize(shape, x.dtype, factor, method, space, edge)
    n_levels = _check_levels(levels, shape, spec)
    if not isinstance(version, str) or version not in VERSIONS:
        raise ValueError(f"`version` must be one of {VERSIONS}, but got version={version!r}.")
    if not isinstance(overwrite, (bool, np.bool_)):
        raise TypeError(f"`overwrite` must be a bool, but got overwrite={overwrite!r}.")
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str, but got name={name!r}.")
    if units is not None and (not isinstance(units, dict) or any(k not in names for k in units)
                              or any(not isinstance(v, str) for v in units.values())):
        raise ValueError(f"`units` must map axis names of {names!r} to unit strings, but got units={units!r}.")
    if not _is_int(max_block_bytes) or max_block_bytes < 1:
        raise ValueError(f"`max_block_bytes` must be an int >= 1, but got max_block_bytes={max_block_bytes!r}.")
    scale0 = _per_axis(scale, len(shape), "scale") or (1.0,) * len(shape)
    out_chunks = _per_axis(chunks, len(shape), "chunks", int) or _default_chunks(shape, names, x)
    if n_levels is None:
        n_levels = _default_levels(shape, spec, out_chunks)

    import zarr

    state = _existing(store)
    if state is not None and state != "incomplete" and not overwrite:
        raise FileExistsError(f"`store` {store!r} already holds "
                              f"{'an OME-Zarr image' if state == 'complete' else 'data'}; "
                              f"pass overwrite=True to replace it.")
    zarr_format = 2 if version == "0.4" else 3
    root = zarr.open_group(store, mode="w", zarr_format=zarr_format)
    root.attrs.put({_MARKER: True})
    if lazy:
        import dask.array as da

        x = x.rechunk(out_chunks)
        data = _dask_pyramid(x, spec, n_levels, int(max_block_bytes))
    else:
        from ..core.threads import get_num_threads
        from .reduce import reduce_levels

        data = [x, *reduce_levels(x, (spec,) * n_levels, threads=get_num_threads())]
    arrays = []
    for k, level in enumerate(data):
        kw = {"dimension_names": list(names)} if zarr_format == 3 else {}
        arrays.append(root.create_array(str(k), shape=level.shape, dtype=level.dtype,
                                        chunks=tuple(max(1, min(c, n)) for c, n in zip(out_chunks, level.shape)),
                                        fill_value=0, **kw))
    if lazy:
        # Level chunks are whole multiples of out_chunks (see pyramid's Notes): no two tasks share a Zarr chunk.
        da.store(data, arrays, lock=False)
    else:
        for level, arr in zip(data, arrays):
            arr[...] = level
    root.attrs.put(_multiscales(names, spec, len(data), scale0, method, version, name, units))
    return [tuple(a.shape) for a in data]
