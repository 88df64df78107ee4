"""The manifest front end: load (with positions), interpolate, validate, build the model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from runner404.diagnostics import Diagnostic
from runner404.errors import ManifestError
from runner404.manifest.model import Manifest


def load_manifest(path: Path, *, environ: Mapping[str, str], sets: Iterable[str] = (),
                  vars_files: Iterable[Path] = (), display: str | None = None) -> Manifest:
    """Load, interpolate and validate a manifest; raise ManifestError with every diagnostic.

    Warnings of a valid manifest are returned on `Manifest.warnings`.
    """
    from runner404.manifest.build import ManifestBuilder
    from runner404.manifest.interpolate import Interpolator
    from runner404.manifest.load import read_manifest
    from runner404.manifest.overrides import apply_set, apply_vars_file
    from runner404.manifest.validate import schema_diagnostics, schema_errors

    display = display or str(path)
    doc = read_manifest(path, display)
    if not isinstance(doc.data, dict):
        raise ManifestError([Diagnostic.at(doc.mark(()), "a manifest must be a mapping with version:, "
                                                         "name: and stages:")])
    for file in vars_files:
        apply_vars_file(doc, Path(file))
    for assignment in sets:
        apply_set(doc, assignment)
    absolute = path.resolve()
    interpolator = Interpolator(doc, environ, absolute.parent)
    data = interpolator.run()
    errors = schema_errors(data, skip=interpolator.failed)
    diagnostics = interpolator.errors + schema_diagnostics(errors, doc)
    broken = interpolator.failed | {tuple(e.absolute_path) for e in errors}
    builder = ManifestBuilder(doc, data, interpolator.refs, absolute, display, broken)
    manifest = builder.build(interpolator.secrets)
    diagnostics += builder.diags
    if any(d.severity == "error" for d in diagnostics):
        raise ManifestError(diagnostics)
    manifest.warnings = diagnostics
    return manifest
