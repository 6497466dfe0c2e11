"""vtstream replay: a past range of a raw-indicator topic fed through the pipeline, at replay priority."""
