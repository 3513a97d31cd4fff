"""The database health sidecar: /livez, /healthz, /readyz and /metrics for kubelet and Prometheus."""
