"""CLI subcommands (JSON out) and HealthState behaviour."""
from __future__ import annotations

import argparse
import asyncio
import json
import threading

import pytest

from dra_framework.kubelet import DeviceHealth, Health, HealthState, PluginServer
from dra_framework.kubelet.cli import add_kubelet_subcommands, main

from .conftest import DRIVER, FakeEngine


@pytest.fixture
def threaded_server(kroot):
    """A PluginServer on its own loop thread, so the CLI can use asyncio.run."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def make():
        state = HealthState(DRIVER)
        state.set("p", "d0", Health.HEALTHY, at=5)
        srv = PluginServer(DRIVER, FakeEngine(), kubelet_root=kroot, health=state)
        await srv.start()
        return srv

    srv = asyncio.run_coroutine_threadsafe(make(), loop).result(10)
    yield srv
    asyncio.run_coroutine_threadsafe(srv.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def run_cli(capsys, *argv):
    rc = main(["kubelet", *argv])
    return rc, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_cli(threaded_server, kroot, capsys):
    common = ["--driver", DRIVER, "--kubelet-root", kroot]
    rc, out = run_cli(capsys, "register-check", *common, "--notify")
    assert rc == 0 and out[0]["endpoint"] == threaded_server.paths.dra and out[0]["notified"]
    assert out[0]["health_version"] == "v1"
    assert threaded_server.registered

    rc, out = run_cli(capsys, "prepare", *common, "--claim", "ns/a/uid-a", "--api-version", "v1beta1")
    assert rc == 0 and out[0]["version"] == "v1beta1"
    assert out[0]["claims"]["uid-a"]["devices"][0]["device"] == "dev-a"

    rc, out = run_cli(capsys, "unprepare", *common, "--claim", "ns/a/uid-a")
    assert rc == 0 and out[0]["claims"] == {"uid-a": {"error": ""}}

    rc, out = run_cli(capsys, "watch-health", *common, "--count", "1")
    assert rc == 0 and out[0]["devices"][0]["device"] == "d0" and out[0]["devices"][0]["health"] == "Healthy"

    rc, out = run_cli(capsys, "register-check", "--driver", "other.example.com", "--kubelet-root", kroot)
    assert rc == 1 and "plugins_registry" in out[0]["error"]


def test_subparser_builder_is_embeddable():
    parser = argparse.ArgumentParser()
    kp = parser.add_subparsers(dest="command").add_parser("kubelet")
    add_kubelet_subcommands(kp.add_subparsers(dest="kubelet_command", required=True))
    args = parser.parse_args(["kubelet", "prepare", "--driver", "d", "--claim", "n/c/u"])
    assert callable(args.func) and args.claim[0].uid == "u"
    with pytest.raises(SystemExit):
        parser.parse_args(["kubelet", "prepare", "--driver", "d", "--claim", "bad"])


async def test_health_state_bulk_and_threads():
    state = HealthState(DRIVER, clock=lambda: 42.0)
    with state.subscribe() as sub:
        state.set_many([DeviceHealth("p", "a", Health.HEALTHY), DeviceHealth("p", "b", "Unhealthy")])
        assert await sub.wait(1)
        assert [(d.device, d.health, d.last_updated) for d in state.snapshot()] == [
            ("a", Health.HEALTHY, 42.0), ("b", Health.UNHEALTHY, 42.0)]
        state.set_many([DeviceHealth("p", "c")], replace_all=True)
        assert [d.device for d in state.snapshot()] == ["c"]
        assert await sub.wait(1)
        # A health source running in another thread wakes the loop's subscriber.
        threading.Thread(target=state.set, args=("p", "c", Health.HEALTHY)).start()
        assert await sub.wait(2)
        assert state.snapshot()[0].health is Health.HEALTHY
        state.remove("p", "c")
        assert await sub.wait(1) and state.snapshot() == []
        assert not await sub.wait(0.01)
    assert state.subscriber_count == 0
