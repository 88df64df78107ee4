"""Which stand-in service backs a simulated Targon workload, chosen by the workload's image.

When a workload of the Targon stand-in (`runner404.sim.targon`) becomes `running`, the stand-in
asks `service_for_image(image)` for a factory and starts the server it returns on 127.0.0.1,
port 0, in a thread; the workload's URL is that server's URL.

A factory is `factory(args, envs, knobs) -> SimServer` (not started yet):
- `args`: the workload's `args` (list of str), `envs`: its `envs` as a dict;
- `knobs`: a `ServiceKnobs` (health_delay, generic fault knobs of the backing service, and a
  free-form `options` mapping for stand-in specific settings).

Image names (matchers are checked newest registration first; the default is used last):

| Image (matcher)                                   | Stand-in                                       |
|---------------------------------------------------|------------------------------------------------|
| anything (default)                                | `runner404.sim.health`: GET /health → 200 after `health_delay` (503 before) |
| `*render-service-js*`, `runner404-sim/renderer*`  | `runner404.sim.renderer` (the render service)  |
| `vllm/vllm-openai*`, `runner404-sim/vlm*`         | `runner404.sim.vlm` (the vLLM judge; model from `--served-model-name`, options `vlm_*`) |
| `runner404-sim/generator*` (tag `:good`/`:poor`)  | `runner404.sim.generator` (options `generator_<knob>`) |

Later stand-ins register here by image, e.g. the generator (miner images), the renderer
(`*/render-service-js:*`, see `runner404.pods.presets.RENDERER_IMAGE`) and the VLM judge
(`vllm/vllm-openai:*`). Register them at the bottom of this module (so `python -m
runner404.sim targon` knows them), or at runtime from a test with `register()` /
`unregister()`.

A matcher is a glob pattern (`fnmatch`, case-sensitive, matched against the whole image
reference, e.g. `"vllm/vllm-openai:*"`), a compiled regular expression (`search`), or a
callable `image -> bool`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from runner404.sim.health import HealthHandler
from runner404.sim.http import Knobs, SimServer


@dataclass(frozen=True)
class ServiceKnobs:
    """What a backing service is told besides its args and envs."""

    health_delay: float = 0.0  # seconds after start during which /health is not yet 200
    faults: Knobs = field(default_factory=Knobs)  # generic knobs of the backing service itself
    options: Mapping[str, Any] = field(default_factory=dict)  # stand-in specific settings


Factory = Callable[[list[str], dict[str, str], ServiceKnobs], SimServer]
Matcher = str | re.Pattern[str] | Callable[[str], bool]


@dataclass(frozen=True, eq=False)  # identity: unregister() removes exactly this one
class Registration:
    matcher: Matcher
    factory: Factory

    def matches(self, image: str) -> bool:
        if isinstance(self.matcher, str):
            return fnmatchcase(image, self.matcher)
        if isinstance(self.matcher, re.Pattern):
            return self.matcher.search(image) is not None
        return bool(self.matcher(image))


class _HealthHandler(HealthHandler):
    pass


def health_service(args: list[str], envs: dict[str, str], knobs: ServiceKnobs) -> SimServer:
    """The default backing service: `runner404.sim.health` (GET /health)."""
    server = SimServer(("127.0.0.1", 0), _HealthHandler, knobs.faults)
    server.healthy_at = time.monotonic() + knobs.health_delay  # type: ignore[attr-defined]
    server.warming_status = int(knobs.options.get("warming_status", 503))  # type: ignore[attr-defined]
    return server


DEFAULT = Registration("*", health_service)
_registry: list[Registration] = []
_lock = threading.Lock()


def register(matcher: Matcher, factory: Factory) -> Registration:
    """Serve workloads whose image matches with `factory`; newer registrations win."""
    registration = Registration(matcher, factory)
    with _lock:
        _registry.append(registration)
    return registration


def unregister(registration: Registration) -> None:
    with _lock:
        if registration in _registry:
            _registry.remove(registration)


def service_for_image(image: str) -> Factory:
    with _lock:
        candidates = list(reversed(_registry))
    for registration in candidates:
        if registration.matches(image):
            return registration.factory
    return DEFAULT.factory


# -- registrations (newest wins; keep the table in the module docstring in step) -------------


def renderer_service(args: list[str], envs: dict[str, str], knobs: ServiceKnobs) -> SimServer:
    """`runner404.sim.renderer`; options: renderer_init_delay, wrong_count_rate, bad_base64_rate."""
    from runner404.sim.renderer import RendererServer

    options = knobs.options
    return RendererServer(("127.0.0.1", 0), knobs.faults,
                          init_delay=float(options.get("renderer_init_delay", knobs.health_delay)),
                          wrong_count_rate=float(options.get("wrong_count_rate", 0.0)),
                          bad_base64_rate=float(options.get("bad_base64_rate", 0.0)))


register("*render-service-js*", renderer_service)
register("runner404-sim/renderer*", renderer_service)


def _quality_arg(args: list[str]) -> str | None:
    """The value of `--quality X` / `--quality=X` in a workload's args (the last one wins)."""
    found = None
    for index, arg in enumerate(args):
        if arg == "--quality" and index + 1 < len(args):
            found = args[index + 1]
        elif arg.startswith("--quality="):
            found = arg.split("=", 1)[1]
    return found


def generator_service(args: list[str], envs: dict[str, str], knobs: ServiceKnobs, *,
                      tag_quality: str | None = None) -> SimServer:
    """`runner404.sim.generator`; quality from `--quality` in args, else the image tag (`:good` /
    `:poor`), else options["generator_quality"], else good. Other options are `generator_<name>`
    for the constructor arguments: generator_warmup (default: health_delay), generator_prompt_latency,
    generator_gpu_capacity, generator_fail_rate, generator_fail_stems, generator_replace_after,
    generator_replace_ignores_budget, generator_busy_for, generator_zip_mode."""
    from runner404.sim.generator import DEFAULT_GPU_CAPACITY, GeneratorServer

    options = knobs.options
    quality = _quality_arg(args) or tag_quality or str(options.get("generator_quality", "good"))
    replace_after = options.get("generator_replace_after")
    return GeneratorServer(("127.0.0.1", 0), knobs.faults, quality=quality,
                           warmup=float(options.get("generator_warmup", knobs.health_delay)),
                           prompt_latency=float(options.get("generator_prompt_latency", 0.0)),
                           gpu_capacity=int(options.get("generator_gpu_capacity", DEFAULT_GPU_CAPACITY)),
                           fail_rate=float(options.get("generator_fail_rate", 0.0)),
                           fail_stems=options.get("generator_fail_stems", ()),
                           replace_after=None if replace_after is None else int(replace_after),
                           replace_ignores_budget=bool(options.get("generator_replace_ignores_budget", False)),
                           busy_for=float(options.get("generator_busy_for", 0.0)),
                           zip_mode=str(options.get("generator_zip_mode", "normal")))


def _generator_with_quality(quality: str) -> Factory:
    def factory(args: list[str], envs: dict[str, str], knobs: ServiceKnobs) -> SimServer:
        return generator_service(args, envs, knobs, tag_quality=quality)

    factory.__name__ = f"generator_service_{quality}"
    return factory


register("runner404-sim/generator*", generator_service)
register("runner404-sim/generator*:good", _generator_with_quality("good"))
register("runner404-sim/generator*:poor", _generator_with_quality("poor"))


def vlm_service(args: list[str], envs: dict[str, str], knobs: ServiceKnobs) -> SimServer:
    """`runner404.sim.vlm`; the served name from the args (`--served-model-name`), capacity from
    the generic knobs, else option `vlm_capacity`, else `--max-num-seqs`; warmup from option
    `vlm_warmup`, else `health_delay`; options `vlm_<keyword>` for the other keywords of
    `VlmServer` (malformed_rate, fenced_rate, trailing_comma_rate, think_rate, script,
    empty_threshold, model)."""
    import dataclasses

    from runner404.sim.vlm import VlmServer, max_num_seqs, served_model_name

    options = {key[4:]: value for key, value in knobs.options.items() if key.startswith("vlm_")}
    allowed = {"model", "warmup", "capacity", "malformed_rate", "fenced_rate", "trailing_comma_rate",
               "think_rate", "script", "empty_threshold"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"unknown VLM stand-in options: {', '.join('vlm_' + k for k in unknown)}")
    faults = knobs.faults
    capacity = options.pop("capacity", None)
    if not faults.capacity:
        capacity = capacity if capacity is not None else max_num_seqs(args)
        if capacity:
            faults = dataclasses.replace(faults, capacity=int(capacity))
    floats = {k: float(v) for k, v in options.items() if k not in ("model", "script")}
    floats.setdefault("warmup", knobs.health_delay)
    return VlmServer(("127.0.0.1", 0), faults, model=str(options.get("model") or served_model_name(args)),
                     script=options.get("script"), **floats)


register("vllm/vllm-openai*", vlm_service)
register("runner404-sim/vlm*", vlm_service)
