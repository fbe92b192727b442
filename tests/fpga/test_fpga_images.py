"""Bad images fail the prepare with an error naming the image and the check, before anything is
written: a path out of the image directories ('..', absolute, a symbolic link leading out), a
wrong sha256, an image built for another interface, a file that is no image."""
from __future__ import annotations

import hashlib
import os

import pytest
from fpga_helpers import afu, fpga_config
from pydantic import ValidationError

from dra_backends.fpga.config import FpgaConfig
from dra_backends.fpga.fake.images import make_gbs, make_xclbin
from dra_backends.fpga.images import ImageError, parse_header

IFACE = "d51533adaee65dab80fba44bbf579b68"
HOST_CHAN, HELLO = "76d7ae9cf66b461f816a5428bcebdbc5", "c6aa954a9b914a37abc11d9f0709dcc3"
DEV, VF = "dfl-0000-3b-00-2-port1", "0000:3b:00.2"


async def _prepare(env, **cfg):
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "fpga", "device": DEV}], configs=[fpga_config(**cfg)])
    return (await engine.prepare([ref]))[ref.uid].error


def _untouched(env):
    assert afu(env.host_root, VF) == HOST_CHAN
    assert not (env.state_root / "fpga" / "executor.jsonl").exists()
    assert env.cdi_files() == []


@pytest.mark.parametrize("image", ["../../../etc/passwd", "/etc/passwd", "a/../../b.gbs"])
def test_traversal_is_refused_when_the_config_is_decoded(image):
    with pytest.raises(ValidationError, match="must be a path relative to an image directory"):
        FpgaConfig(image=image)


async def test_traversal_fails_the_claim_naming_the_field(env):
    err = await _prepare(env, image="../../../etc/passwd")
    assert "image" in err and "must be a path relative to an image directory, without '..'" in err
    _untouched(env)


async def test_symlink_out_of_the_image_dir_is_refused(env, tmp_path):
    outside = tmp_path / "outside.gbs"
    outside.write_bytes(make_gbs(IFACE, HELLO, "evil"))
    os.symlink(outside, env.host_root / f"srv/intel.com/fpga/{IFACE}/evil.gbs")
    err = await _prepare(env, image=f"{IFACE}/evil.gbs")
    assert f"image '{IFACE}/evil.gbs': resolves to {outside} outside the allowed image directory /srv/intel.com/fpga" in err
    _untouched(env)


async def test_wrong_digest_is_refused(env):
    err = await _prepare(env, afuId=HELLO, sha256="0" * 64)
    real = hashlib.sha256(make_gbs(IFACE, HELLO, "hello_world")).hexdigest()
    assert f"image '{IFACE}/{HELLO}.gbs': sha256 {real} does not match the config's {'0' * 64}" in err
    _untouched(env)


async def test_right_digest_is_accepted(env):
    real = hashlib.sha256(make_gbs(IFACE, HELLO, "hello_world")).hexdigest()
    assert await _prepare(env, afuId=HELLO, sha256=real) == ""
    assert afu(env.host_root, VF) == HELLO


async def test_image_for_another_interface_is_refused(env):
    err = await _prepare(env, image="bfac4d851ee856fe8c95865ce1bbaa2d/f7df405cbd7acf7222f144b0b93acd18.gbs")
    assert ("built for interface bfac4d851ee856fe8c95865ce1bbaa2d, but device dfl-0000-3b-00-2-port1 has interface "
            f"{IFACE}; nothing was written") in err
    _untouched(env)


async def test_unknown_function_and_not_an_image(env):
    err = await _prepare(env, afuId="f7df405cbd7acf7222f144b0b93acd18")
    assert f"afuId f7df405cbd7acf7222f144b0b93acd18: no gbs image for interface {IFACE} in imageDirs" in err
    (env.host_root / "srv/intel.com/fpga/notes.gbs").write_text("hello")
    engine = env.engine
    ref = env.add_claim("d", [{"request": "fpga", "device": DEV}], configs=[fpga_config(image="notes.gbs")])
    err = (await engine.prepare([ref]))[ref.uid].error
    assert "image 'notes.gbs': not a GBS or xclbin image" in err
    _untouched(env)


async def test_image_whose_function_is_not_the_requested_afu_id(env):
    err = await _prepare(env, image=f"{IFACE}/{HELLO}.gbs", afuId=HOST_CHAN)
    assert f"contains function {HELLO}, not the requested afuId {HOST_CHAN}" in err


async def test_programming_off_without_image_dirs(tmp_path):
    from fpga_helpers import fpga_env
    env = fpga_env(tmp_path, imageDirs=[])
    err = await _prepare(env, afuId=HELLO)
    assert "programming is off on this node" in err
    _untouched(env)


def test_header_parsers():
    assert parse_header(make_gbs(IFACE, HELLO, "x"), "x") == ("gbs", IFACE, HELLO)
    assert parse_header(make_xclbin(IFACE, HELLO, "vbnv"), "x") == ("xclbin", IFACE, HELLO)
    with pytest.raises(ImageError, match="GBS metadata length"):
        parse_header(make_gbs(IFACE, HELLO, "x")[:16] + b"\0\0\0\0", "x")
