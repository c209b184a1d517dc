"""Multi-GPU: a worker process per GPU for the queue (task level), or one request split over GPUs.

- :mod:`core.parallel.pool` — :class:`WorkerPool`, task level (``JobQueue(pool.executors())``).
- :mod:`core.parallel.split` — :func:`run_split` and the warm :class:`SplitGroup`: CFG parallel
  (:mod:`core.parallel.cfg_hook`, ours) combined with diffusers' context parallel.
- :mod:`core.parallel.shared_prompt` and :mod:`core.parallel.split_decode` — a split job's prompt encoded
  once on rank 0, its VAE decode split in bands over the ranks.
- :mod:`core.parallel.planner` — :func:`plan_parallel`, task level or split for a job, from the measured
  speed-ups of :mod:`core.parallel.speedups` when there are some.
- :mod:`core.parallel.dispatch` — :class:`GpuDispatcher`, the Studio's per-job choice between the two, and
  :class:`WorkerStatus` for the queue view.
- :mod:`core.parallel.rank_options` — what of a request's speed options and step cache changes on split ranks.
- :mod:`core.parallel.config` — the ``--parallel`` flag and :class:`ParallelConfig`.

Nothing is imported here: worker processes import only what they need (no torch for the pool itself).
See docs/parallel.md.
"""
