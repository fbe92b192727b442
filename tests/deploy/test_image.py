"""The Containerfile cannot be built on the test machines (no container engine); its inputs are
checked instead: it installs exactly the pinned requirements, which are pyproject.toml's
runtime dependencies (and theirs), plus dra-framework with every built-in backend, in a build
stage whose virtual environment alone reaches the final image."""
from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"
LOCK = ROOT / "deploy" / "image" / "requirements.txt"


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+)", line)
        assert m, f"{LOCK.name}: {line!r} is not pinned with =="
        pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def generator():
    spec = importlib.util.spec_from_file_location("image_requirements", ROOT / "scripts" / "image-requirements.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pinned_requirements_are_the_ones_pyproject_declares():
    """Every runtime dependency of pyproject.toml is pinned, at a version its specifier allows;
    nothing else is pinned but what those require (scripts/image-requirements.py rewrites it)."""
    pins = lock_pins()
    gen = generator()
    for req in gen.declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} (pyproject.toml) is not in {LOCK.name}: run scripts/image-requirements.py"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"{LOCK.name} pins {name}=={pins[name]}, outside pyproject's {req}"
    want = set(gen.closure(gen.declared()))
    assert set(pins) == want, (f"{LOCK.name} differs from pyproject's dependency closure: extra "
                               f"{sorted(set(pins) - want)}, missing {sorted(want - set(pins))}")


def stages() -> list[list[str]]:
    """Instructions per stage (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def test_containerfile_installs_exactly_the_lock_and_the_project():
    build = stages()[0]
    assert len(stages()) == 2
    runs = [i for i in build if i.startswith("RUN ")]
    assert any("pip install --no-deps" in r and "-r /build/requirements.txt" in r for r in runs), runs
    assert any(re.search(r"pip install --no-deps /build/src\b", r) for r in runs), runs
    assert "COPY deploy/image/requirements.txt /build/requirements.txt" in build
    # Every package setup.py installs is copied into the build context of the project.
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {Path(src).name for i in build if i.startswith("COPY ") and "/build/src" in i for src in i.split()[1:-1]}
    assert {"dra_framework", "backends", "pyproject.toml", "setup.py", "README.md"} <= copied, copied
    # Built-in backends (entry points) import from what was copied.
    for name, target in data["project"]["entry-points"]["dra_framework.backends"].items():
        module = target.split(":")[0]
        top = module.split(".")[0]
        assert top in {"dra_framework", "dra_backends"}, f"backend {name}: {module} is not part of the project"
        rel = module.replace("dra_backends", "backends", 1).replace(".", "/")
        assert (ROOT / f"{rel}.py").exists() or (ROOT / rel / "__init__.py").exists(), f"backend {name}: {module}"
    # Third-party additions are constrained by the lock.
    assert any("-c /build/requirements.txt" in r and "extra-requirements" in r for r in runs), runs


def test_final_stage_takes_only_the_virtual_environment():
    final = stages()[-1]
    copies = [i for i in final if i.startswith("COPY ")]
    assert copies == ["COPY --from=build /opt/dra-framework /opt/dra-framework"], copies
    entry = next(i for i in final if i.startswith("ENTRYPOINT"))
    assert "dra-framework" in entry
