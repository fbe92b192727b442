"""A tiny driver process for the kill -9 tests: runs the real engine over a node directory and
prepares one claim whose backend hangs after its first side effects.

usage: crash_driver.py <root> <claim.json>
"""
import asyncio
import json
import sys

from engine_support import Env, crash_factories

from dra_framework.kubelet.types import ClaimRef


async def main(root: str, claim_file: str) -> None:
    env = Env(root, crash_factories())
    with open(claim_file) as f:
        claim = json.load(f)
    md = claim["metadata"]
    env.claims[(md["namespace"], md["name"])] = claim
    engine = await env.make_engine()
    print(await engine.prepare([ClaimRef(md["uid"], md["namespace"], md["name"])]), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
