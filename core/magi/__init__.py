"""MAGI-1 (Sand AI) chunk-wise autoregressive video model: own implementation loading the official weights."""
