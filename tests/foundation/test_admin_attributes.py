"""Admin-supplied device attributes: added where allowed, never over discovered facts
(docs/failure-modes.md#admin-attributes-overriding-discovered-facts)."""
from __future__ import annotations

import pytest

from dra_framework.config import load_settings
from dra_framework.composition import build_backends, discover
from dra_framework.errors import ConfigError
from dra_framework.plugins import Registry


def settings(tmp_path, rules: str):
    p = tmp_path / "c.yaml"
    p.write_text("nodeName: n\nstateDir: %s\ndrivers:\n- name: example.dra.dev\n  backends:\n  - name: example\n"
                 "    options: {count: 2}\n    deviceAttributes:\n%s" % (tmp_path, rules))
    return load_settings(p)


async def test_discovered_attributes_win_and_reserved_keys_are_skipped(tmp_path, caplog):
    s = settings(tmp_path, """
    - devices: ["acc-0*"]
      attributes: {model: fake, rack: r1, example.dra.dev/index: 99, resource.kubernetes.io/pcieRoot: pci0000:00,
                   uuid: x, row: {version: 1.2.3}}
""")
    inv = await discover(build_backends(s, 0, s.drivers[0], Registry()))
    devs = {d.name: d for d in inv.pools[None].devices}
    acc0 = devs["acc-0"].attributes
    assert acc0["rack"] == "r1" and str(acc0["row"]) == "1.2.3"
    assert acc0["model"] == "sim-x1" and acc0["index"] == 0          # discovered facts win
    assert "resource.kubernetes.io/pcieRoot" not in acc0 and "uuid" not in acc0
    assert devs["acc-0-half-1"].attributes["rack"] == "r1"
    assert "rack" not in devs["acc-1"].attributes                    # pattern did not match
    text = caplog.text
    for key in ("'model'", "'example.dra.dev/index'", "'resource.kubernetes.io/pcieRoot'", "'uuid'"):
        assert key in text, key
    assert "discovered attributes win" in text and "reserved" in text


def test_bad_rule_is_a_config_error_naming_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"drivers\[0\]\.backends\[0\]\.deviceAttributes\[0\]\.attributes"):
        settings(tmp_path, "    - attributes: {rack: [1, 2]}\n")
