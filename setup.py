"""Package discovery only: the built-in backends live in ./backends but import as dra_backends."""
from setuptools import find_packages, setup

packages = find_packages(include=["dra_framework", "dra_framework.*"])
packages += ["dra_backends" + p[len("backends"):] for p in find_packages(include=["backends", "backends.*"])]
setup(packages=packages, package_dir={"dra_backends": "backends"})
