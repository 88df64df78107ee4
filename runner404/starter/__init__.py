"""`404-run init`: a commented starter manifest, its prompts and the schema for editors."""

from __future__ import annotations

from pathlib import Path

from runner404.errors import UsageError
from runner404.schema import schema_text

_HERE = Path(__file__).parent
FILES = {"manifest.yaml": "manifest.yaml.txt", "prompts.json": "prompts.json.txt"}


def write_starter(directory: Path, force: bool = False) -> list[Path]:
    targets = {directory / name: (_HERE / source).read_text(encoding="utf-8") for name, source in FILES.items()}
    targets[directory / "manifest.schema.json"] = schema_text()
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise UsageError(f"{names} already exist{'s' if len(existing) == 1 else ''}; use --force to overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in targets.items():
        path.write_text(text, encoding="utf-8")
    return list(targets)
