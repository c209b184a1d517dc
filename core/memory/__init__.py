"""Memory planning: low-memory levels (``levels``), estimates (``estimate``), the planner (``planner``),
placing a pipeline at a level (``apply``), token chunking (``chunking``) and OOM recovery (``oom``)."""
