"""Output formats beyond the enriched events: STIX 2.1 bundles and the TAXII 2.1 server."""
