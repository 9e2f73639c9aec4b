"""Streaming the feature store into detector training batches, and image files as detector inputs."""
