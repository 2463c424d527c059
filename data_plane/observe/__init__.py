"""What a worker reports: per-route counters and latency, Prometheus metrics, the access log."""
