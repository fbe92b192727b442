"""Deliberate defects for scripts/negative-controls.sh: loaded into every Python process (the
daemon too) through PYTHONPATH when DRA_MUTATION is set, to show the end-to-end test catches them."""
import os
m = os.environ.get("DRA_MUTATION")
if m == "service-name":
    import dra_framework.kubelet.server as s
    s.DRA_V1 = "v1.DRAPlugn"
    s.DRA_V1BETA1 = "v1beta1.DRAPlugn"
elif m == "invalid-slice":
    import dra_framework.slices.convert as c
    orig = c.device_to_api
    def bad(dev, **kw):
        out = orig(dev, **kw)
        if out is not None:
            out.setdefault("attributes", {})["bad attribute!"] = {"string": "x"}
        return out
    c.device_to_api = bad
elif m == "cdi-id":
    import dra_framework.cdi.writer as w
    orig = w.CdiWriter.qualified
    def wrong(self, name):
        return orig(self, name) + "-nope"
    w.CdiWriter.qualified = wrong
