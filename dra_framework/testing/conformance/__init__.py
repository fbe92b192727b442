"""The backend conformance suite (docs/testing.md, "Conformance suite").

Run it for any installed backend with one pytest option, no files to copy::

    pytest --dra-conformance=<backend> --dra-config=<composed-driver config.yaml>

The tests in this package are collected only when ``--dra-conformance`` is given (see
:mod:`dra_framework.testing.pytest_plugin`). They run the real ``dra-framework run`` daemon with
the config against the harness (kube-apiserver, the kubelet's DRA code, the scheduler's
allocator, the CDI reference library) and check what every backend must guarantee.
"""
from pathlib import Path

#: The directory pytest collects for ``--dra-conformance``.
SUITE_DIR = Path(__file__).parent
