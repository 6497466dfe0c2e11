"""What loading the mappings costs a process at start."""

import pytest

pytestmark = pytest.mark.unit


def test_loading_mappings_does_not_import_the_iri_grammar_jsonschema_would_build():
    """jsonschema imports rfc3987-syntax when it is installed (1.1 s of every process start);
    vtstream's schemas use no IRI format, so the import is refused."""
    import subprocess
    import sys

    probe = ("import importlib.util, sys; installed = importlib.util.find_spec('rfc3987_syntax') is not None; "
             "import pipeline.mapping.loader, jsonschema; "
             "print(installed, sys.modules.get('rfc3987_syntax') is None)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    # installed (kubernetes-validate brings it to the test environment), so the refusal is what keeps it out
    assert done.stdout.split() == ["True", "True"], done.stdout + done.stderr
