"""The suite's own parts: sidecar processes, redis-server and Redis Cluster, an OTLP receiver,
waiting with a deadline."""
