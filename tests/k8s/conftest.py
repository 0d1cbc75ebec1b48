"""pytest configuration for the tests of the Kubernetes manifests (k8s/)."""

import sys
from pathlib import Path

# The helper modules live next to the tests; make them importable whatever
# pytest's import mode (prepend or importlib) and wherever pytest is started.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "podman: end-to-end test that runs the k8s pods with `podman kube play` "
        "(needs root, docker and podman; builds the images)",
    )
