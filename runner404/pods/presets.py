"""The classic 404-cli pod constants (reference: protocols.md §4.9, §5.2)."""

from __future__ import annotations

RENDERER_IMAGE = "europe-west3-docker.pkg.dev/gen-456515/active-competition/render-service-js:0.4.3"
JUDGE_IMAGE = "vllm/vllm-openai:v0.20.0"
JUDGE_MODEL = "glm-4.6v-flash"
JUDGE_ARGS = [
    "zai-org/GLM-4.6V-Flash", "--revision", "411bb4d77144a3f03accbf4b780f5acb8b7cde4e",
    "--served-model-name", JUDGE_MODEL, "--host", "0.0.0.0", "--port", "8000",
    "--trust-remote-code", "--dtype", "bfloat16", "--gpu-memory-utilization", "0.90",
    "--max-model-len", "32768", "--max-num-seqs", "32",
]

# Values a pod gets when it names the preset; the manifest overrides any of them.
PRESETS: dict[str, dict] = {
    "generator": {  # the image is the miner's own: required
        "resource": "h200-large", "port": 10006,
        "health": {"path": "/health", "timeout": "4h", "interval": "10s"},
    },
    "renderer": {
        "image": RENDERER_IMAGE, "resource": "cpu-small", "port": 8000, "env": {"PORT": "8000"},
        "health": {"path": "/health", "timeout": "1h", "interval": "10s"},
    },
    "judge": {
        "image": JUDGE_IMAGE, "resource": "rtx6000b-small", "port": 8000, "args": JUDGE_ARGS,
        "health": {"path": "/health", "timeout": "1h", "interval": "10s"},
    },
}

# The preset a pod must have (when it has one) to serve a stage kind.
PRESET_FOR_KIND = {"generate": "generator", "render": "renderer", "judge": "judge"}

DEFAULT_HEALTH = {"path": "/health", "timeout": "1h", "interval": "10s"}
DEFAULT_PORT = 8000
