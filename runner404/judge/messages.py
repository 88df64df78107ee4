"""The chat messages of each judge call (judge.md §6): fixed captions around the images, and our
own instruction wording from Jinja2 templates, which a manifest may replace (`templates:`)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from runner404.judge.rules import VIEW_DESCRIPTIONS  # how a view is described to the model (judge.md §6)

BUILTIN = Path(__file__).parent / "templates"
TEMPLATE_NAMES = sorted(p.name for p in BUILTIN.glob("*.j2"))


Parts = list[tuple[str, Any]]  # ("text", str) | ("image", path or URL)


class Templates:
    """Built-in templates, each replaceable by a same-named file in `folder`."""

    def __init__(self, folder: Path | None = None):
        loaders = ([FileSystemLoader(str(folder))] if folder else []) + [FileSystemLoader(str(BUILTIN))]
        self.env = SandboxedEnvironment(loader=ChoiceLoader(loaders), undefined=StrictUndefined,
                                        autoescape=False, trim_blocks=True, lstrip_blocks=False)
        self.folder = folder
        self._texts: dict[tuple, str] = {}

    def render(self, name: str, **values: Any) -> str:
        """A template's text. Texts of hashable values (every call's but the checklist
        verification's) are kept: a duel asks for the same few texts again and again."""
        try:
            key: tuple | None = (name, *sorted(values.items()))
            text = self._texts.get(key)  # type: ignore[arg-type]
        except TypeError:  # a list or dict among the values
            key, text = None, None
        if text is None:
            text = self.env.get_template(name).render(**values).strip()
            if key is not None and len(self._texts) < 1024:
                self._texts[key] = text
        return text

    def digest(self) -> str:
        """sha256 over the sources in use (for the stage fingerprint)."""
        sha = hashlib.sha256()
        for name in TEMPLATE_NAMES:
            source, _, _ = self.env.loader.get_source(self.env, name)
            sha.update(name.encode() + b"\0" + source.encode() + b"\0")
        return sha.hexdigest()


def _chat(system: str, parts: Parts) -> tuple[str, Parts]:
    return system, parts


def prompt_match(t: Templates, prompt: str, first: Path, second: Path, angle: str) -> tuple[str, Parts]:
    """S1 (white views) and S3 (gray views); `angle` is a view name or its description."""
    return _chat(t.render("evaluator_system.j2"), [
        ("text", "Reference image (target object):"), ("image", prompt),
        ("text", "3D model 1:"), ("image", first),
        ("text", "3D model 2:"), ("image", second),
        ("text", t.render("prompt_match.j2", angle=VIEW_DESCRIPTIONS.get(angle, angle))),
    ])


def best_view(t: Templates, prompt: str, first: Path, second: Path) -> tuple[str, Parts]:
    return _chat(t.render("evaluator_system.j2"), [
        ("text", "Image prompt to generate 3D model:"), ("image", prompt),
        ("text", "First 3D model (single best prompt-matching view):"), ("image", first),
        ("text", "Second 3D model (single best prompt-matching view):"), ("image", second),
        ("text", t.render("best_view.j2")),
    ])


def artifact_compare(t: Templates, prompt: str, first: Path, second: Path) -> tuple[str, Parts]:
    return _chat(t.render("evaluator_system.j2"), [
        ("text", "Image prompt to generate 3D model:"), ("image", prompt),
        ("text", "First 3D model (4 different views):"), ("image", first),
        ("text", "Second 3D model (4 different views):"), ("image", second),
        ("text", t.render("artifact_compare.j2")),
    ])


def checklist_decompose(t: Templates, prompt: str) -> tuple[str, Parts]:
    return _chat(t.render("checklist_decompose_system.j2"), [
        ("text", "Reference image:"), ("image", prompt),
        ("text", t.render("checklist_decompose.j2")),
    ])


def checklist_verify(t: Templates, prompt: str, grid: Path, main_object: str,
                     features: list[dict]) -> tuple[str, Parts]:
    return _chat(t.render("checklist_verify_system.j2"), [
        ("text", "Reference image:"), ("image", prompt),
        ("text", "3D model (4 views, 2x2 grid):"), ("image", grid),
        ("text", t.render("checklist_verify.j2", main_object=main_object, features=features)),
    ])


def side_guard(t: Templates, front: Path, side: Path, view: str) -> tuple[str, Parts]:
    """S4; `view` is a view name or its description."""
    return _chat(t.render("side_guard_system.j2"), [
        ("text", "Front view of the 3D model:"), ("image", front),
        ("text", f"Same 3D model viewed from {VIEW_DESCRIPTIONS.get(view, view)}:"), ("image", side),
        ("text", t.render("side_guard.j2")),
    ])


def explain(t: Templates, prompt: str, grid_a: Path, grid_b: Path) -> tuple[str, Parts]:
    return _chat(t.render("explain_system.j2"), [
        ("text", "Reference image:"), ("image", prompt),
        ("text", "Model A (4 views):"), ("image", grid_a),
        ("text", "Model B (4 views):"), ("image", grid_b),
        ("text", t.render("explain.j2")),
    ])
