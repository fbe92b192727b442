"""Socket paths of a DRA kubelet plugin, and stale-socket cleanup.

Layout (docs/operations.md, "Sockets"):
  registration socket: <kubelet_root>/plugins_registry/<driver>-reg.sock
  DRA service socket:  <kubelet_root>/plugins/<driver>/dra.sock
With a pod UID (rolling updates, kubelet 1.33+) each instance gets its own
sockets: `dra-<podUID>.sock`, and a registration name chosen by
`rolling_update_registrar_socket_file`.

A unix socket path must fit in ``sun_path`` (107 bytes). When the Go helper's
names do not fit, a deterministic shorter name is used (`socket_paths`), so
every valid driver name (a DNS subdomain of up to 63 bytes) with every kubelet
root the kubelet itself can run with (at most 80 bytes: its own
``<root>/pod-resources/kubelet.sock`` must fit) gets usable sockets. The kubelet
needs nothing else of them: its plugin watcher registers any socket in the
registry directory (or below it) whose name does not start with ".", and dials
the endpoint GetInfo reports as given (pkg/kubelet/pluginmanager/pluginwatcher,
pkg/kubelet/cm/dra/plugin).
"""
from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import logging
import os
import socket
import stat
from dataclasses import dataclass

from ..errors import DraFrameworkError
from ..fsutil import atomic_write_file
from ..paths import DEFAULT_KUBELET_ROOT

log = logging.getLogger(__name__)

REGISTRY_SUBDIR = "plugins_registry"
PLUGINS_SUBDIR = "plugins"

# sun_path is 108 bytes on Linux including the terminating NUL, so a path
# may use at most 107 bytes. The Go helper's chart test accepts 107 and
# rejects 108 (dra-example-driver, RollingUpdateRegistrarSocketFile test).
UNIX_PATH_MAX = 107
#: The kubelet exits when its pod-resources socket <root>/pod-resources/kubelet.sock does not
#: fit (pkg/kubelet/apis/podresources/server.go ListenAndServePodResources): longer roots are
#: not a working kubelet.
KUBELET_ROOT_MAX = UNIX_PATH_MAX - len("/pod-resources/kubelet.sock")
#: Shortest hash accepted in a fallback name (base32: 5 bits per character, 40 bits).
_MIN_HASH_CHARS = 8


@dataclass(frozen=True)
class SocketPaths:
    """Absolute paths one plugin instance listens on. ``fallback`` lists the sockets
    ("registration", "dra") whose Go-helper name did not fit and got a short hashed name."""

    registry_dir: str
    plugin_dir: str
    registration: str
    dra: str
    fallback: tuple[str, ...] = ()


def _check_driver(driver: str) -> None:
    # Driver names are DNS subdomains; a "/" would escape the directories.
    if not driver or "/" in driver or driver.startswith("."):
        raise ValueError(f"invalid DRA driver name {driver!r}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b32(text: str) -> str:
    """Lower-case base32 of sha256(text): [a-z2-7], never starts with "." or "-"."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode().rstrip("=").lower()


def path_fits(path: str) -> bool:
    """True if `path` fits in AF_UNIX sun_path (<= 107 bytes)."""
    return len(path.encode()) <= UNIX_PATH_MAX


def _room(directory: str) -> int:
    """Bytes left for a file name in `directory`."""
    return UNIX_PATH_MAX - len(os.path.normpath(directory).encode()) - 1


def short_socket_name(directory: str, key: str, prefix: str = "", suffix: str = "") -> str | None:
    """``<prefix><base32 sha256(key)><suffix>`` cut to what fits in `directory` (at most 26 hash
    characters, at least 8), or None when not even 8 fit. Deterministic for one directory."""
    n = min(26, _room(directory) - len(prefix) - len(suffix))
    if n < _MIN_HASH_CHARS:
        return None
    return f"{prefix}{_b32(key)[:n]}{suffix}"


def rolling_update_registrar_socket_file(registry_dir: str, driver: str, pod_uid: str) -> str:
    """Registration socket *file name* for rolling updates.

    The first candidate whose joined, normalized path fits in sun_path wins
    (Go `RollingUpdateRegistrarSocketFile`, k8s.io/dynamic-resource-allocation/kubeletplugin):
      1. <driver>-<podUID>-reg.sock
      2. <driver>-<b64url_nopad(sha256(podUID)[:8])>-reg.sock
      3. dra-<b64url_nopad(sha256(driver + "\0" + podUID)[:16])>-reg.sock
    Form 3 is returned even if it does not fit (`socket_paths` then falls back
    to `short_socket_name`). Older Go helpers always use form 1.
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
    outside the driver container. Names, the first that fits in 107 bytes:

    * registration: the Go helper's name (``<driver>-reg.sock``, or the three
      rolling-update forms); then ``<base32 sha256(driver\\0podUID)>`` cut to
      fit (no suffix: at the longest kubelet root only 9 bytes are left).
    * DRA service: ``<plugin_dir>/dra.sock`` or ``dra-<podUID>.sock``; with a
      pod UID ``dra-<b64url(sha256(podUID)[:8])>.sock``; then
      ``<plugin_dir>/../dra-<base32 sha256(driver\\0podUID)>.sock`` cut to fit
      (the parent is <kubelet_root>/plugins, which the deployment mounts).

    Raises ValueError for a bad driver name, or naming the path when even the
    shortest name does not fit (a kubelet root longer than the kubelet accepts).
    """
    _check_driver(driver)
    root = os.path.abspath(kubelet_root)
    reg_dir = os.path.normpath(os.path.abspath(registry_dir or os.path.join(root, REGISTRY_SUBDIR)))
    data_dir = os.path.normpath(os.path.abspath(plugin_dir or os.path.join(root, PLUGINS_SUBDIR, driver)))
    key = f"{driver}\x00{pod_uid or ''}"
    fallback: list[str] = []
    if pod_uid:
        reg_name = rolling_update_registrar_socket_file(reg_dir, driver, pod_uid)
        dra_names = [f"dra-{pod_uid}.sock", f"dra-{_b64(hashlib.sha256(pod_uid.encode()).digest()[:8])}.sock"]
    else:
        reg_name = f"{driver}-reg.sock"
        dra_names = ["dra.sock"]
    registration = os.path.join(reg_dir, reg_name)
    if not path_fits(registration):
        short = short_socket_name(reg_dir, key)
        if short is None:
            raise ValueError(_too_long("registration", registration, reg_dir, kubelet_root))
        registration = os.path.join(reg_dir, short)
        fallback.append("registration")
    dra = next((p for p in (os.path.join(data_dir, n) for n in dra_names) if path_fits(p)), None)
    if dra is None:
        shared = os.path.dirname(data_dir)
        short = short_socket_name(shared, key, "dra-", ".sock")
        if short is None:
            raise ValueError(_too_long("DRA service", os.path.join(data_dir, dra_names[-1]), shared, kubelet_root))
        dra = os.path.join(shared, short)
        fallback.append("dra")
    return SocketPaths(reg_dir, data_dir, registration, dra, tuple(fallback))


def _too_long(what: str, path: str, directory: str, kubelet_root: str) -> str:
    return (f"unix socket path is {len(path.encode())} bytes, limit {UNIX_PATH_MAX}: {path}; no {what} "
            f"socket name fits in {directory} ({len(directory.encode())} bytes); use a kubelet root dir of "
            f"at most {KUBELET_ROOT_MAX} bytes (the kubelet's own limit), not {kubelet_root!r}")


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

    The Go helper removes the file before listening and on Close (k8s.io/dynamic-resource-allocation
    kubeletplugin). A non-socket file is left alone and raises FileExistsError,
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
    """Remove dead sockets of this driver left by earlier instances.

    Our own two paths are replaced only when nothing answers on them;
    otherwise SocketInUseError is raised (another instance serves them). Other files matching this driver's name patterns
    (`<driver>-reg.sock`, `<driver>-*-reg.sock` in the registry dir,
    `dra*.sock` in the plugin dir) are removed only when nobody accepts
    connections on them, because during a rolling update the other pod is
    still alive. Hashed names carry no driver name: they are found through
    the ``sockets-*.txt`` records each instance leaves in the plugin dir
    (`record_sockets`), so a crashed pod's hashed sockets are removed too.
    Returns the removed paths.
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
    candidates, records = _candidates(paths, driver)
    for path in candidates:
        if path in (paths.registration, paths.dra):
            continue
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode) and not _is_live(path):
                os.unlink(path)
                removed.append(path)
        except FileNotFoundError:
            pass
    for record, listed in records:
        if not any(os.path.lexists(p) for p in listed):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(record)
    for p in removed:
        log.info("removed stale socket %s", p)
    return removed


def live_instances(paths: SocketPaths, driver: str) -> list[str]:
    """Registration sockets of other instances of ``driver`` that accept connections (a
    rolling update's other pod), by the names :func:`remove_stale_sockets` recognises."""
    candidates, _ = _candidates(paths, driver)
    out = []
    for path in candidates:
        if path in (paths.registration, paths.dra) or os.path.dirname(path) != paths.registry_dir:
            continue
        with contextlib.suppress(FileNotFoundError):
            if path not in out and stat.S_ISSOCK(os.lstat(path).st_mode) and _is_live(path):
                out.append(path)
    return out


def _candidates(paths: SocketPaths, driver: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Socket paths that may belong to other instances of ``driver``, and the records listing them."""
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
    records = _other_records(paths)
    candidates += [p for _, listed in records for p in listed]
    return candidates, records


def _record_path(paths: SocketPaths) -> str:
    return os.path.join(paths.plugin_dir, f"sockets-{_b32(paths.registration)[:16]}.txt")


def record_sockets(paths: SocketPaths) -> None:
    """Leave a record of this instance's two socket paths in the plugin dir, so that a later
    instance can remove them if this one dies without cleaning up (hashed names do not say
    which driver they belong to)."""
    atomic_write_file(_record_path(paths), f"{paths.registration}\n{paths.dra}\n".encode(), 0o600)


def forget_sockets(paths: SocketPaths) -> None:
    """Remove this instance's record (clean stop)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_record_path(paths))


def _other_records(paths: SocketPaths) -> list[tuple[str, list[str]]]:
    """Other instances' records and the socket paths they list. Only paths in this driver's
    socket directories count, whatever a record says."""
    dirs = {paths.registry_dir, paths.plugin_dir, os.path.dirname(paths.dra)}
    own = _record_path(paths)
    out = []
    try:
        names = sorted(os.listdir(paths.plugin_dir))
    except FileNotFoundError:
        return []
    for n in names:
        record = os.path.join(paths.plugin_dir, n)
        if not (n.startswith("sockets-") and n.endswith(".txt")) or record == own:
            continue
        try:
            with open(record, encoding="utf-8", errors="replace") as f:
                listed = [ln.strip() for ln in f.read(4096).splitlines()]
        except OSError:
            continue
        out.append((record, [p for p in listed if os.path.isabs(p) and os.path.dirname(os.path.normpath(p)) in dirs]))
    return out
