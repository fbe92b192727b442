"""The API reference of dra_framework.api is built with pdoc (as ``make api-docs`` does), every
public name and public method has a docstring, and every cross-reference in them resolves."""
from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pdoc  # in the test extras: every test run checks the reference, never skipped
import pdoc.doc
import pdoc.render
import pytest

import dra_framework.api as api

ROLE = re.compile(r":(?:class|func|meth|data|mod|attr|exc|obj):`~?([\w.]+)`")


def _resolve_dotted(target: str) -> bool:
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for p in parts[i:]:
                obj = getattr(obj, p)
        except AttributeError:
            return False
        return True
    return False


def _resolves(target: str, module: pdoc.doc.Module, owner: pdoc.doc.Doc) -> bool:
    if target.startswith("dra_framework"):
        return _resolve_dotted(target)
    if module.get(target) is not None:
        return True
    cls = owner if isinstance(owner, pdoc.doc.Class) else None
    if cls is None and owner.qualname.count("."):
        cls = module.get(owner.qualname.rsplit(".", 1)[0])
    if isinstance(cls, pdoc.doc.Class) and any(m.name == target.split(".")[0] for m in cls.members.values()):
        return True
    source_module = getattr(owner.obj, "__module__", None) or ""
    return _resolve_dotted(f"{source_module}.{target}") if source_module else False


def _public_docs(module: pdoc.doc.Module):
    """(doc object, is a member of a public class) for every public name and public own method."""
    for member in module.members.values():
        if member.name not in api.__all__:
            continue
        yield member, False
        if isinstance(member, pdoc.doc.Class):
            for m in member.own_members:
                if not m.name.startswith("_") and isinstance(m, pdoc.doc.Function):
                    yield m, True


@pytest.fixture(scope="module")
def module():
    return pdoc.doc.Module(api)


def test_reference_builds(tmp_path):
    pdoc.render.configure(docformat="restructuredtext")
    pdoc.pdoc("dra_framework.api", output_directory=tmp_path)
    html = (tmp_path / "dra_framework/api.html").read_text()
    for name in ("BackendContext", "PrepareResult", "device_node", "HookError"):
        assert f'id="{name}"' in html, name


def test_every_public_name_and_method_has_a_docstring(module):
    missing = []
    for doc, _is_method in _public_docs(module):
        if isinstance(doc, (pdoc.doc.Class, pdoc.doc.Function)) and len(inspect.cleandoc(doc.docstring or "")) < 20:
            missing.append(doc.qualname)
    assert not missing, f"public names without a docstring: {', '.join(missing)}"


def test_every_cross_reference_resolves(module):
    broken = []
    docs = [(module, module.docstring)] + [(d, d.docstring) for d, _ in _public_docs(module)]
    for doc, text in docs:
        for target in ROLE.findall(text or ""):
            if not _resolves(target, module, doc):
                broken.append(f"{doc.qualname or 'dra_framework.api'}: {target}")
    assert not broken, "references that do not resolve: " + "; ".join(broken)


def test_broken_reference_is_caught(module):
    """The check above can fail."""
    assert not _resolves("NoSuchThing", module, module.get("Device"))
    assert not _resolves("dra_framework.api.NoSuchThing", module, module)
    assert _resolves("Device", module, module) and _resolves("dra_framework.errors.HookError", module, module)


def test_make_target_uses_the_same_tool():
    make = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert "pdoc" in make and "dra_framework.api" in make
