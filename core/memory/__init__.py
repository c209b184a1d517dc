"""Memory planning: low-memory levels (``levels``), estimates (``estimate``), the planner (``planner``),
placing a pipeline at a level (``apply``), token chunking (``chunking``), OOM recovery (``oom``), the
low-RAM loader (``low_ram_load``, on ``safetensors_io``) and the mapped fp8 DiT cache (``fp8_cache``)."""
