"""Declarative VirusTotal -> event mapping files (data, not code).

``MAPPINGS_DIR`` lets an installed package find the shipped files; users point
``VTSTREAM_MAPPINGS_DIR`` at their own copy to change them.
"""

from pathlib import Path

MAPPINGS_DIR = Path(__file__).resolve().parent
