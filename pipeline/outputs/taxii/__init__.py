"""The TAXII 2.1 server over indicators.stix: the feed (Kafka paging) and the HTTP application."""
