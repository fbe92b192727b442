import pytest
from dra_example_backend import ExampleBackend, Options
from engine_support import Env, FakeBackend


@pytest.fixture
def example_env(tmp_path):
    """One driver with the example backend (acc-0..3 and their halves)."""
    return Env(tmp_path, [("example", lambda ctx: ExampleBackend(Options(), ctx))])


@pytest.fixture
def fake_env(tmp_path):
    """One driver with a FakeBackend (dev-0, dev-1; dev-shared allows multiple allocations)."""
    return Env(tmp_path, [("fake", lambda ctx: FakeBackend(ctx, names=("dev-0", "dev-1", "dev-shared"),
                                                           shareable=("dev-shared",)))])
