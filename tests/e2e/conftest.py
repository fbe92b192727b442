import pytest

from daemon_proc import Daemon


@pytest.fixture
def daemons(tmp_path):
    """Deprecated: use the ``dra_driver`` fixture (dra_framework.testing)."""
    started: list[Daemon] = []

    def make(config: dict, name: str = "daemon") -> Daemon:
        d = Daemon(config, tmp_path, name)
        started.append(d)
        return d.start()

    yield make
    for d in started:
        d.stop()
