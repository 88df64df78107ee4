"""`${{ … }}` expressions in manifest values: Jinja2, sandboxed, strict.

Names: `vars`, `env` (the process environment), `secrets` and `stages.<id>.outputs`. A value that
is exactly one expression keeps the expression's type (`seed: ${{ vars.seed }}` stays an
integer); text around expressions makes a string. An undefined name is an error at the position
of the expression, never an empty string. Referring to `stages.<id>` records a dependency edge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.utils import missing
from jinja2.sandbox import SandboxedEnvironment

from runner404.diagnostics import Diagnostic, Mark, did_you_mean
from runner404.manifest.load import Document, JsonPath
from runner404.secret import Secret

_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)
# `stages.render-good.outputs` reads as one dotted name, as in CI expression languages; Jinja
# would parse `render - good`, so dashed segments become subscripts before compiling.
_DOTTED = re.compile(r"\b(?:vars|env|secrets|stages)(?:\.[A-Za-z_][A-Za-z0-9_-]*)+")
_DASHED_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*-[A-Za-z0-9_-]*)")


def _dashes_to_subscripts(source: str) -> str:
    return _DOTTED.sub(lambda m: _DASHED_SEGMENT.sub(lambda s: f"['{s.group(1)}']", m.group(0)), source)
TOP_LEVEL_NAMES = ("vars", "env", "secrets", "stages")
# Files each stage kind writes, as `stages.<id>.outputs.<key>` (relative to its output folder).
STAGE_OUTPUT_FILES: dict[str, dict[str, str]] = {
    "generate": {}, "render": {}, "commit": {}, "commitments": {},
    "judge": {"duels": "duels.json", "match": "match.json"},
    "report": {"json": "report.json", "markdown": "summary.md", "html": "report.html", "junit": "junit.xml"},
}
NO_SECTIONS = {"version", "secrets", "$schema"}  # never interpolated


def default_output(stage_id: str) -> str:
    return f"out/{stage_id}"


class _Undefined(StrictUndefined):
    """StrictUndefined whose message names what is available."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        if self._undefined_obj is not missing and not isinstance(self._undefined_obj, Undefined):
            return f"{type(self._undefined_obj).__name__} value has no attribute '{self._undefined_name}'"
        name = self._undefined_name
        return (f"undefined name '{name}'{did_you_mean(name, TOP_LEVEL_NAMES)}; "
                f"names available: {', '.join(TOP_LEVEL_NAMES)}")


_ENV = SandboxedEnvironment(undefined=_Undefined, autoescape=False)


class Namespace:
    """A read-only mapping whose missing keys explain themselves (and `default()` still works)."""

    def __init__(self, path: str, data: Mapping[str, Any], missing: str = "is not defined"):
        self._path, self._data, self._missing = path, data, missing

    def __getitem__(self, key: str) -> Any:
        if key in self._data:
            return wrap(self._data[key], f"{self._path}.{key}")
        hint = f"'{self._path}.{key}' {self._missing}{did_you_mean(key, self._data)}"
        return _Undefined(hint=hint, obj=self, name=key)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __str__(self) -> str:
        return str(unwrap(self))

    def plain(self) -> dict:
        return {k: unwrap(v) for k, v in self._data.items()}


def wrap(value: Any, path: str) -> Any:
    return Namespace(path, value) if isinstance(value, dict) else value


def unwrap(value: Any) -> Any:
    if isinstance(value, Namespace):
        return value.plain()
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


@dataclass(frozen=True)
class StageRef:
    """`stages.<target>` used inside stage `source` (None outside stages) at `mark`."""

    source: str | None
    target: str
    mark: Mark


class ExpressionError(Exception):
    pass


class Interpolator:
    def __init__(self, doc: Document, environ: Mapping[str, str], base_dir: Path):
        self.doc = doc
        self.errors: list[Diagnostic] = []
        self.refs: list[StageRef] = []
        self.failed: set[JsonPath] = set()  # values whose expressions failed (already reported)
        self.secrets = self._secrets(doc.data.get("secrets"), environ, base_dir)
        self.context: dict[str, Any] = {
            "env": Namespace("env", environ, "is not set in the environment"),
            "secrets": Namespace("secrets", self.secrets, "is not declared under secrets:"),
        }
        self._stage_outputs: dict[str, Any] = {}
        self._resolving: set[str] = set()
        self._where: tuple[str | None, Mark] = (None, Mark(doc.file, 1, 1))

    @staticmethod
    def _secrets(section: Any, environ: Mapping[str, str], base_dir: Path) -> dict[str, Secret]:
        if not isinstance(section, dict):
            return {}
        return {
            name: Secret.from_source(name, source, base_dir, environ)
            for name, source in section.items()
            if isinstance(source, dict) and len(source) == 1
            and isinstance(source.get("env", source.get("file")), str)
        }

    def run(self) -> dict:
        data = self.doc.data
        result = dict(data)
        if isinstance(data.get("vars"), dict):
            hint = "vars cannot refer to other vars (their values see env and secrets only)"
            self.context["vars"] = _Undefined(hint=hint, name="vars")
            result["vars"] = self.walk(data["vars"], ("vars",))
            self.context["vars"] = Namespace("vars", result["vars"])
        else:
            self.context["vars"] = Namespace("vars", {})
        self.context["stages"] = _Stages(self)
        for key, value in data.items():
            if key not in NO_SECTIONS and key != "vars":
                result[key] = self.walk(value, (key,))
        return result

    # -- walking ---------------------------------------------------------------------------

    def walk(self, value: Any, path: JsonPath) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if "${{" in key:
                    self.errors.append(Diagnostic.at(self.doc.key_mark(path + (key,)),
                                                     "expressions are not allowed in keys"))
                out[key] = self.walk(item, path + (key,))
            return out
        if isinstance(value, list):
            return [self.walk(item, path + (i,)) for i, item in enumerate(value)]
        if isinstance(value, str) and "${{" in value:
            return self.string(value, path)
        return value

    def string(self, text: str, path: JsonPath) -> Any:
        mark = self.doc.mark(path)
        stage = path[1] if len(path) > 1 and path[0] == "stages" else None
        saved, self._where = self._where, (stage, mark)
        try:
            whole = _EXPR.fullmatch(text)
            if whole and "}}" not in whole.group(1):
                return self.evaluate(whole.group(1), text, mark, native=True)
            parts: list[Any] = []
            pos = 0
            for match in _EXPR.finditer(text):
                parts.append(text[pos:match.start()])
                parts.append(self.evaluate(match.group(1), match.group(0), mark, native=False))
                pos = match.end()
            rest = text[pos:]
            if "${{" in rest:
                raise self.error(mark, rest[rest.index("${{"):], "unterminated expression: missing '}}'")
            parts.append(rest)
            if any(isinstance(p, Secret) for p in parts):
                return Secret.join([p for p in parts if p != ""])
            return "".join(str(p) for p in parts)
        except ExpressionError:
            self.failed.add(path)
            return text
        finally:
            self._where = saved

    def evaluate(self, source: str, shown: str, mark: Mark, native: bool) -> Any:
        try:
            value = _ENV.compile_expression(_dashes_to_subscripts(source), undefined_to_none=False)(self.context)
            if isinstance(value, Undefined):
                value._fail_with_undefined_error()
        except ExpressionError:
            raise
        except TemplateError as exc:
            raise self.error(mark, shown, getattr(exc, "message", None) or str(exc)) from None
        except Exception as exc:  # the sandbox surfaces Python errors, e.g. 1/0 or "a" - 1
            raise self.error(mark, shown, f"{type(exc).__name__}: {exc}") from None
        value = unwrap(value)
        if not isinstance(value, str | int | float | bool | list | dict | Secret | type(None)):
            raise self.error(mark, shown, f"evaluates to a {type(value).__name__}, not a value")
        if not native and isinstance(value, dict | list):
            raise self.error(mark, shown, "a mapping or list cannot be embedded in text")
        return value if native or isinstance(value, Secret) else ("" if value is None else str(value))

    def error(self, mark: Mark, shown: str, message: str) -> ExpressionError:
        snippet = mark.snippet or ""
        at = snippet.find(shown.splitlines()[0] if shown else shown, mark.col - 1)
        if at >= 0:
            mark = Mark(mark.file, mark.line, at + 1, at + 1 + len(shown.splitlines()[0]), mark.snippet)
        self.errors.append(Diagnostic.at(mark, f"in {shown.strip()}: {message}"))
        return ExpressionError(message)

    # -- stages.<id>.outputs -----------------------------------------------------------------

    def stage_outputs(self, stage_id: str) -> dict[str, str] | None:
        if stage_id in self._stage_outputs:
            return self._stage_outputs[stage_id]
        stage = self.doc.data["stages"][stage_id]
        kind = stage.get("uses") if isinstance(stage, dict) else None
        if kind not in STAGE_OUTPUT_FILES:
            return None
        folder = stage.get("output", default_output(stage_id))
        if isinstance(folder, str) and "${{" in folder:
            if stage_id in self._resolving:
                return None  # the output refers to itself; reported where it is evaluated
            self._resolving.add(stage_id)
            try:
                folder = self.string(folder, ("stages", stage_id, "output"))
            finally:
                self._resolving.discard(stage_id)
        if not isinstance(folder, str):
            folder = default_output(stage_id)
        outputs = {"dir": folder}
        outputs.update({k: f"{folder.rstrip('/')}/{name}" for k, name in STAGE_OUTPUT_FILES[kind].items()})
        self._stage_outputs[stage_id] = outputs
        return outputs


class _Stages:
    """`stages`: looking a stage up records the dependency edge."""

    def __init__(self, interpolator: Interpolator):
        self._ip = interpolator
        stages = interpolator.doc.data.get("stages")
        self._ids = list(stages) if isinstance(stages, dict) else []

    def __getitem__(self, stage_id: str) -> Any:
        if stage_id not in self._ids:
            hint = f"unknown stage '{stage_id}'{did_you_mean(stage_id, self._ids)}"
            return _Undefined(hint=hint, obj=self, name=stage_id)
        source, mark = self._ip._where
        self._ip.refs.append(StageRef(source, stage_id, mark))
        outputs = self._ip.stage_outputs(stage_id)
        if outputs is None:
            return Namespace(f"stages.{stage_id}", {"outputs": {}})
        return Namespace(f"stages.{stage_id}", {"outputs": outputs})

    def __contains__(self, stage_id: object) -> bool:
        return stage_id in self._ids

    def __iter__(self):
        return iter(self._ids)
