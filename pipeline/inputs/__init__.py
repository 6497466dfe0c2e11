"""Inputs that are not Kafka records: the local files that file events name."""
