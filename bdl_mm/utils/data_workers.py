"""Stop a DataLoader's worker processes now (torch has no public call for it; ``_shutdown_workers`` is what its
iterator's ``__del__`` runs). Used where a loader's workers must not outlive a change: the pseudo-label hook (the
workers hold a copy of the dataset) and a finished stage (persistent workers pin the memory they forked with)."""


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
