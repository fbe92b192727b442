"""Socket paths of a DRA kubelet plugin, and stale-socket cleanup.

Layout (fact sheet section 1, "Directories" and "Rolling updates"):
  registration socket: <kubelet_root>/plugins_registry/<driver>-reg.sock
  DRA service socket:  <kubelet_root>/plugins/<driver>/dra.sock
With a pod UID (rolling updates, kubelet 1.33+) each instance gets its own
sockets: `dra-<podUID>.sock`, and a registration name chosen by
`rolling_update_registrar_socket_file`.
"""
from __future__ import annotations

import base64
import errno
import hashlib
import logging
import os
import socket
import stat
from dataclasses import dataclass

from ..errors import DraFrameworkError

log = logging.getLogger(__name__)

DEFAULT_KUBELET_ROOT = "/var/lib/kubelet"
REGISTRY_SUBDIR = "plugins_registry"
PLUGINS_SUBDIR = "plugins"

# sun_path is 108 bytes on Linux including the terminating NUL, so a path
# may use at most 107 bytes. The Go helper's chart test accepts 107 and
# rejects 108 (dra-example-driver, RollingUpdateRegistrarSocketFile test).
UNIX_PATH_MAX = 107


@dataclass(frozen=True)
class SocketPaths:
    """Absolute paths one plugin instance listens on."""

    registry_dir: str
    plugin_dir: str
    registration: str
    dra: str


def _check_driver(driver: str) -> None:
    # Driver names are DNS subdomains; a "/" would escape the directories.
    if not driver or "/" in driver or driver.startswith("."):
        raise ValueError(f"invalid DRA driver name {driver!r}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def path_fits(path: str) -> bool:
    """True if `path` fits in AF_UNIX sun_path (<= 107 bytes)."""
    return len(path.encode()) <= UNIX_PATH_MAX


def rolling_update_registrar_socket_file(registry_dir: str, driver: str, pod_uid: str) -> str:
    """Registration socket *file name* for rolling updates.

    The first candidate whose joined, normalized path fits in sun_path wins
    (fact sheet section 1, Go `RollingUpdateRegistrarSocketFile`):
      1. <driver>-<podUID>-reg.sock
      2. <driver>-<b64url_nopad(sha256(podUID)[:8])>-reg.sock
      3. dra-<b64url_nopad(sha256(driver + "\\0" + podUID)[:16])>-reg.sock
    Form 3 is returned even if it does not fit (the directory is then too
    long; `socket_paths` raises for that). Older Go helpers always use form 1.
    """
    _check_driver(driver)
    base = os.path.normpath(registry_dir)
    candidates = [
        f"{driver}-{pod_uid}-reg.sock",
        f"{driver}-{_b64(hashlib.sha256(pod_uid.encode()).digest()[:8])}-reg.sock",
    ]
    for name in candidates:
        if path_fits(os.path.join(base, name)):
            return name
    digest = hashlib.sha256(f"{driver}\x00{pod_uid}".encode()).digest()[:16]
    return f"dra-{_b64(digest)}-reg.sock"


def socket_paths(
    driver: str,
    kubelet_root: str = DEFAULT_KUBELET_ROOT,
    *,
    pod_uid: str | None = None,
    registry_dir: str | None = None,
    plugin_dir: str | None = None,
) -> SocketPaths:
    """Compute both socket paths for `driver`.

    registry_dir defaults to <kubelet_root>/plugins_registry and plugin_dir
    to <kubelet_root>/plugins/<driver>; both must be the same inside and
    outside the driver container. Raises ValueError for a bad driver name or
    a path longer than 107 bytes.
    """
    _check_driver(driver)
    root = os.path.abspath(kubelet_root)
    reg_dir = os.path.normpath(os.path.abspath(registry_dir or os.path.join(root, REGISTRY_SUBDIR)))
    data_dir = os.path.normpath(os.path.abspath(plugin_dir or os.path.join(root, PLUGINS_SUBDIR, driver)))
    if pod_uid:
        reg_name = rolling_update_registrar_socket_file(reg_dir, driver, pod_uid)
        dra_name = f"dra-{pod_uid}.sock"
    else:
        reg_name = f"{driver}-reg.sock"
        dra_name = "dra.sock"
    paths = SocketPaths(reg_dir, data_dir, os.path.join(reg_dir, reg_name), os.path.join(data_dir, dra_name))
    for p in (paths.registration, paths.dra):
        if not path_fits(p):
            raise ValueError(f"unix socket path is {len(p.encode())} bytes, limit {UNIX_PATH_MAX}: {p}")
    return paths


def _is_live(path: str) -> bool:
    """True if something accepts connections on the unix socket `path`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except OSError as exc:
        # ECONNREFUSED/ENOENT: nobody listens; anything else: assume live.
        return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    finally:
        s.close()


def remove_socket(path: str) -> bool:
    """Remove the socket file at `path` if present; returns whether removed.

    The Go helper removes the file before listening and on Close (fact sheet
    section 1). A non-socket file is left alone and raises FileExistsError,
    so a typo in a path option cannot delete a regular file.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(f"{path} exists and is not a unix socket")
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


class SocketInUseError(DraFrameworkError):
    """A live process already serves one of this driver's socket paths."""


def remove_stale_sockets(paths: SocketPaths, driver: str) -> list[str]:
    """Remove dead sockets of this driver left by earlier instances (bug log B01).

    Our own two paths are replaced only when nothing answers on them;
    otherwise SocketInUseError is raised (another instance serves them). Other files matching this driver's name patterns
    (`<driver>-reg.sock`, `<driver>-*-reg.sock` in the registry dir,
    `dra*.sock` in the plugin dir) are removed only when nobody accepts
    connections on them, because during a rolling update the other pod is
    still alive. Hashed form-3 names carry no driver name and are not
    touched. Returns the removed paths.
    """
    for own in (paths.registration, paths.dra):
        # Our own paths are only ours to replace when nobody serves them: a second instance
        # started without a pod UID must not take over (and later delete) a live driver's sockets.
        try:
            live = stat.S_ISSOCK(os.lstat(own).st_mode) and _is_live(own)
        except FileNotFoundError:
            live = False
        if live:
            raise SocketInUseError(
                f"another process is serving DRA driver {driver} on {own}; stop it first, or give each "
                f"instance its own sockets with --pod-uid (rolling updates)")
    removed = [p for p in (paths.registration, paths.dra) if remove_socket(p)]
    candidates: list[str] = []
    for directory, match in (
        (paths.registry_dir, lambda n: n == f"{driver}-reg.sock" or (n.startswith(f"{driver}-") and n.endswith("-reg.sock"))),
        (paths.plugin_dir, lambda n: n.startswith("dra") and n.endswith(".sock")),
    ):
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        candidates += [os.path.join(directory, n) for n in sorted(names) if match(n)]
    for path in candidates:
        if path in (paths.registration, paths.dra):
            continue
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode) and not _is_live(path):
                os.unlink(path)
                removed.append(path)
        except FileNotFoundError:
            pass
    for p in removed:
        log.info("removed stale socket %s", p)
    return removed
