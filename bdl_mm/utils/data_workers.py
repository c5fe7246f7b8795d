"""Memory between stages. :func:`stop_workers` stops a DataLoader's worker processes now (torch has no public call
for it; ``_shutdown_workers`` is what its iterator's ``__del__`` runs): the pseudo-label hook (the workers hold a
copy of the dataset) and a finished stage (persistent workers pin the memory they forked with).
:func:`release_memory` collects a finished stage and returns malloc's freed heap to the system."""


def stop_workers(dataloader) -> int:
    """Shut down ``dataloader``'s live iterator, if any, so that the next ``iter()`` forks fresh workers; return the
    number of worker processes stopped."""
    iterator = getattr(dataloader, '_iterator', None)
    stopped = 0
    if iterator is not None and hasattr(iterator, '_shutdown_workers'):
        stopped = len(getattr(iterator, '_workers', ()))
        iterator._shutdown_workers()
    if hasattr(dataloader, '_iterator'):
        dataloader._iterator = None
    return stopped


def release_memory() -> int:
    """Collect the garbage of a finished stage and hand glibc's freed heap back to the system (``malloc_trim``:
    Python frees a stage's many small and mid-sized buffers into malloc's arenas, which keep them, so the process
    would carry one stage's peak into the next). Returns the number of objects collected; the trim is skipped
    where the C library has no ``malloc_trim`` (not glibc)."""
    import ctypes
    import ctypes.util
    import gc
    collected = gc.collect()
    name = ctypes.util.find_library('c')
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, 'malloc_trim'):
            libc.malloc_trim(0)
    except OSError:  # no loadable C library: nothing to trim
        pass
    return collected
