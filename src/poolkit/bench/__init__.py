"""What ``poolkit bench`` and the scripts in ``benchmarks/`` share.

Private to poolkit's own benchmarks (no stable API), and kept free of the
command line so that a script can import it without building a parser:

``machine``
    The report header: CPU model and vector extensions, cores, load,
    versions, git commit; :class:`~poolkit.bench.machine.CpuWatch`, the
    noise indicator (other processes' CPU use, from ``/proc/stat``).
``contenders``
    One forward+backward pass of each contender (poolkit's methods, PyTorch,
    JAX) on the same data, and the check that their results agree.
``first_call``
    First-call latency in fresh processes, with a cold and a warm kernel cache.
``plot``
    The bar chart of ``poolkit bench --plot`` (matplotlib, imported when drawing).
``units``
    Seconds and bytes in words.

Nothing here imports PyTorch, JAX or matplotlib until a contender or a plot
that needs them is built.
"""
