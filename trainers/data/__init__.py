"""Streaming the feature store into detector training batches."""
