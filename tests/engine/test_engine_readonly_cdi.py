"""A read-only CDI directory: the prepare fails with an error that says what happened, and no
"will retry" when nothing is left to retry. Needs root (a read-only tmpfs mount)."""
from __future__ import annotations

import subprocess

import pytest


@pytest.fixture
def readonly_cdi(fake_env):
    fake_env.cdi_root.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(fake_env.cdi_root)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs: {r.stderr.strip()}")
    yield fake_env
    subprocess.run(["umount", str(fake_env.cdi_root)], check=False)


async def test_readonly_cdi_dir_rolls_back_without_a_false_retry_promise(readonly_cdi, caplog):
    env = readonly_cdi
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    err = (await engine.prepare([ref]))[ref.uid].error
    assert "writing the CDI spec failed" in err and "Read-only file system" in err
    assert "will retry" not in err and "rollback" not in err
    assert engine.checkpoint.get(ref.uid) is None
    assert [c[0] for c in env.instances["fake"].calls] == ["prepare", "unprepare"]
    assert "will retry" not in caplog.text
