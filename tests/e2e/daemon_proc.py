"""Deprecated: use the ``dra_driver`` fixture / :class:`dra_framework.testing.DriverProcess`
(docs/testing.md). Kept so that tests written against this module keep working; it keeps
the paths and ports of the given config as they are."""
from __future__ import annotations

from pathlib import Path

from dra_framework.testing import DriverProcess, k8s
from dra_framework.testing.driver import executable

EXE = Path(executable())


class Daemon(DriverProcess):
    """``Daemon(config, workdir, name, args)``: ``config`` already names node, dirs and kubeconfig."""

    def __init__(self, config: dict, workdir: Path, name: str = "daemon", args: tuple[str, ...] = ()) -> None:
        super().__init__(config, workdir=workdir, name=name, args=args, node_name=config["nodeName"],
                         kubelet_root=config["kubeletRootDir"], kubeconfig=config.get("kubeconfig"),
                         cdi_root=config.get("cdiRoot"), state_dir=config.get("stateDir"), ports=False)
        self.config.update({k: config[k] for k in ("metricsPort", "healthzPort") if k in config})
        self._write_config()


def wait_for(pred, timeout: float, what: str, daemon: DriverProcess | None = None, interval: float = 0.2):
    return k8s.wait_for(pred, timeout, what, interval=interval, proc=daemon)
