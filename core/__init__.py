"""Core runner of the video studio: requests, jobs, pipelines, memory, caches and video io."""
