"""Operations: Prometheus metrics, health and readiness probes, JSON logs."""
