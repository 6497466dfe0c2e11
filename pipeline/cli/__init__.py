"""The ``vtstream`` command line."""
