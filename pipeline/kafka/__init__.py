"""Kafka plumbing: faust's batch loop and transport, the plain-aiokafka stage loop, the cache copy, topic admin."""
