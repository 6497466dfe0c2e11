"""The pipeline's stages, in flow order: intake, lookup, gateway, retry, results."""
