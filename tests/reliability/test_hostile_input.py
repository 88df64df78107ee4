"""Hostile input: results archives built to escape or exhaust, symlinks planted in output folders,
prompt files in odd encodings, and manifests built to explode.

Nothing may be written outside the output folders (and the state folder), memory stays bounded
(peak RSS of the runner, read from /proc), and every problem ends as a clear error: a per-item
failure, or exit 2 with a positioned `file:line:col` diagnostic — never a traceback or a hang.
"""

from __future__ import annotations

import io
import json
import re
import stat
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reliability_helpers import (POSITIONED, assert_clean_output, cli, prompt_images, query, run, tree,
                                 write_modules)

MEMORY_BOUND_KB = 250 * 1024  # the runner's peak RSS on hostile input (a normal run: ~60-90 MB)


# -- a hostile generator -----------------------------------------------------------------------

def _zip(entries: list[tuple[str, bytes, int | None]]) -> bytes:
    """A ZIP of (name, data, unix mode or None) entries, names exactly as given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def _member_bomb(stem: str, size: int, lie: bool) -> bytes:
    """One `<stem>.js` member inflating to `size` bytes of spaces; with `lie`, the central
    directory claims it is 100 bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        info = zipfile.ZipInfo(f"{stem}.js", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as member:
            chunk = b" " * (1 << 20)
            for _ in range(size >> 20):
                member.write(chunk)
    data = bytearray(buffer.getvalue())
    if lie:
        at = data.rindex(b"PK\x01\x02")  # the central directory entry: uncompressed size at +24
        data[at + 24:at + 28] = (100).to_bytes(4, "little")
    return bytes(data)


MODULE = b"export default function generate(THREE) { return new THREE.Group(); }\n"


def _archive(mode: str, stems: list[str]) -> bytes | None:
    if mode == "names":
        return _zip([
            (f"../../../{stems[0]}.js", MODULE, None),               # traversal
            (f"/tmp/runner404-abs/{stems[1]}.js", MODULE, None),     # absolute
            (f"..\\..\\{stems[2]}.js", MODULE, None),                # backslash traversal
            (f"{stems[3]}.js", b"/etc/passwd", stat.S_IFLNK | 0o777),  # a symlink member
        ])
    if mode == "many-entries":
        return _zip([(f"x{i}/{stems[0]}.txt", b"", None) for i in range(5000)])
    if mode == "member-bomb":
        return _member_bomb(stems[0], 64 << 20, lie=False)
    if mode == "lying-bomb":
        return _member_bomb(stems[0], 64 << 20, lie=True)
    return None  # "endless": streamed by the handler


class HostileGenerator:
    """The generator contract on loopback, answering /results with a hostile archive."""

    def __init__(self, mode: str):
        self.mode, self.stems, self.state = mode, [], "ready"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _json(self, status: int, payload) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.startswith("/health"):
                    self._json(200, {"status": "ok"})
                elif self.path.startswith("/status"):
                    self._json(200, {"status": owner.state})
                elif self.path.startswith("/results"):
                    self._results()
                else:
                    self._json(404, {"detail": "not found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                owner.stems = [p["stem"] for p in body["prompts"]]
                owner.state = "complete"
                self._json(200, {"accepted": len(owner.stems)})

            def _results(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                data = _archive(owner.mode, owner.stems)
                chunk = 1 << 20
                try:
                    if data is None:  # endless: 1 MiB chunks until the client hangs up (at most 256)
                        block = b"PK" + b"\x00" * (chunk - 2)
                        for _ in range(256):
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                    else:
                        for at in range(0, len(data), chunk):
                            part = data[at:at + chunk]
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


GENERATE = """\
version: 1
name: hostile
pods:
  generator: {{preset: generator, url: "{url}", health: {{interval: 0.05s}}}}
prompts:
  set: {{file: prompts.json}}
stages:
  generate: {{uses: generate, pod: generator, prompts: set, seed: 1, poll_interval: 0.05s}}
"""


@pytest.mark.parametrize("mode, reason", [
    ("names", None),
    ("many-entries", "entries; at most"),
    ("member-bomb", "over the 1024 KiB limit"),
    ("lying-bomb", "p000.js"),
    ("endless", "results archive over 64 MiB"),
])
def test_hostile_result_archives(tmp_path, mode, reason):
    work = tmp_path / "work"
    work.mkdir()
    stems = prompt_images(work, 4)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("untouched")
    server = HostileGenerator(mode)
    try:
        (work / "m.yaml").write_text(GENERATE.format(url=server.url))
        before = set(tree(tmp_path))
        done = run(work, timeout=120)
    finally:
        server.stop()
    assert_clean_output(done)
    assert done.peak_rss_kb < MEMORY_BOUND_KB, f"peak RSS {done.peak_rss_kb // 1024} MB"
    written = set(tree(tmp_path)) - before
    assert {p for p in written if not p.startswith(("work/out/generate/", "work/.runner404/"))} == set()
    assert (outside / "sentinel").read_text() == "untouched" and not Path("/tmp/runner404-abs").exists()
    generated = work / "out/generate"
    for path in generated.iterdir():  # only regular <stem>.js files, never a link
        assert path.is_file() and not path.is_symlink() and path.name in {f"{s}.js" for s in stems}
    failed = {r["item"]: r["reason"] for r in query(work, "SELECT item, reason FROM items WHERE status='failed'")}
    if reason is None:
        assert done.code == 0, done.stdout[-2000:]
        assert sorted(p.name for p in generated.iterdir()) == [f"{s}.js" for s in stems]
        assert (generated / f"{stems[3]}.js").read_bytes() == b"/etc/passwd"  # content, not a link
    else:
        assert done.code == 4, done.stdout[-2000:]
        assert failed and any(reason in text for text in failed.values()), failed


# -- symlinks in output folders --------------------------------------------------------------------

RENDER = """\
version: 1
name: links
provider: local
pods:
  renderer: {preset: renderer, command: python -m runner404.sim renderer}
stages:
  render: {uses: render, pod: renderer, input: js/, img_size: 32}
"""


def test_links_inside_an_output_folder_are_replaced_not_followed(tmp_path):
    work = tmp_path / "work"
    write_modules(work / "js", 3)
    (work / "m.yaml").write_text(RENDER)
    outside = tmp_path / "outside"
    (outside / "stem").mkdir(parents=True)
    (outside / "stem" / "sentinel").write_text("untouched")
    (outside / "file.png").write_text("untouched")
    out = work / "out/render"
    out.mkdir(parents=True)
    (out / "m000").symlink_to(outside / "stem")                     # a stem folder
    (out / "m001.png").symlink_to(outside / "file.png")             # a stem's grid copy
    (out / "m002").mkdir()
    (out / "m002" / "grid.png").symlink_to(outside / "file.png")    # a file in a stem folder
    done = run(work, timeout=90)
    assert done.code == 0, done.stdout[-2000:]
    assert tree(outside) == {"stem/sentinel": b"untouched", "file.png": b"untouched"}
    assert not [p for p in out.rglob("*") if p.is_symlink()]
    assert (out / "m000" / "grid.png").is_file()


@pytest.mark.parametrize("stage", ["render", "generate"])
def test_an_output_folder_that_is_a_link_is_not_written_through(tmp_path, stage):
    work = tmp_path / "work"
    work.mkdir()
    if stage == "render":
        write_modules(work / "js", 2)
        (work / "m.yaml").write_text(RENDER)
    else:
        prompt_images(work, 2)
        (work / "m.yaml").write_text(
            "version: 1\nname: links\nprovider: local\npods:\n"
            "  generator: {preset: generator, command: python -m runner404.sim generator}\n"
            "prompts:\n  set: {file: prompts.json}\nstages:\n"
            "  generate: {uses: generate, pod: generator, prompts: set, seed: 1, poll_interval: 0.05s}\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "out").mkdir()
    (work / "out" / stage).symlink_to(outside)
    done = run(work, timeout=90)
    assert_clean_output(done)
    assert tree(outside) == {}, f"written through the link: {sorted(tree(outside))[:5]}"
    assert done.code != 0 and "link" in (done.stdout + done.stderr)


# -- prompt files in odd encodings ----------------------------------------------------------------

PROMPTS_MANIFEST = """\
version: 1
name: encodings
provider: local
pods:
  generator: {{preset: generator, command: python -m runner404.sim generator}}
prompts:
  set: {{file: {file}}}
stages:
  generate: {{uses: generate, pod: generator, prompts: set, seed: 1}}
"""
JSON_TEXT = '{"prompts": [{"stem": "caf\u00e9x", "image_url": "images/p000.png"}], "seed": 1}'
PLAIN_JSON = '{"prompts": [{"stem": "p000", "image_url": "images/p000.png"}], "seed": 1}'


@pytest.mark.parametrize("name, data, valid", [
    ("utf8-bom.json", b"\xef\xbb\xbf" + PLAIN_JSON.encode(), True),
    ("utf16le-bom.json", PLAIN_JSON.encode("utf-16"), False),
    ("utf16be-bom.json", b"\xfe\xff" + PLAIN_JSON.encode("utf-16-be"), False),
    ("utf16le-nobom.json", PLAIN_JSON.encode("utf-16-le"), False),
    ("utf32.json", PLAIN_JSON.encode("utf-32"), False),
    ("latin1.json", JSON_TEXT.encode("latin-1"), False),
    ("invalid-utf8.json", b'{"prompts": [{"stem": "p\xff", "image_url": "images/p000.png"}]}', False),
    ("nul.json", PLAIN_JSON.encode().replace(b"p000", b"p\x00000", 1), False),
    ("lone-surrogate.json", PLAIN_JSON.replace("p000", "p\\ud800", 1).encode(), False),
    ("empty.json", b"", False),
    ("utf16le-bom.txt", "images/p000.png\n".encode("utf-16"), False),
    ("invalid-utf8.txt", b"images/p\xff.png\n", False),
])
def test_prompt_files_in_odd_encodings(tmp_path, cli, name, data, valid):
    prompt_images(tmp_path, 1)
    (tmp_path / name).write_bytes(data)
    (tmp_path / "m.yaml").write_text(PROMPTS_MANIFEST.format(file=name))
    result = cli(["validate", "m.yaml"], cwd=tmp_path)
    for text in (result.stdout, result.stderr):
        assert "Traceback" not in text and "internal error" not in text, text
    if valid:
        assert result.exit_code == 0, result.stderr
    else:
        assert result.exit_code == 2, result.stdout + result.stderr
        assert re.search(POSITIONED, result.stderr, re.M), result.stderr
        assert name in result.stderr  # the message names the file


# -- manifests built to explode ----------------------------------------------------------------

HEAD = "version: 1\nname: bomb\nstages:\n  s: {uses: report, input: out/x}\nvars:\n"


def _laughs() -> str:
    text = HEAD + '  l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    return text + "".join(f"  l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10))


def _merge_bomb() -> str:
    text = HEAD + "  m0: &m0 {" + ", ".join(f"k{j}: {j}" for j in range(20)) + "}\n"
    for i in range(1, 8):
        text += f"  m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 20) + "]}\n"
    return text


HOSTILE = {
    "alias-bomb": _laughs,
    "recursive-alias": lambda: HEAD + "  a: &a [1, *a]\n",
    "recursive-mapping-alias": lambda: HEAD + "  a: &a {b: *a}\n",
    "python-tag": lambda: HEAD + "  a: !!python/object/apply:os.system 'touch pwned'\n",
    "control-character": lambda: HEAD + '  a: "x\x00y"\n',
    "utf16-manifest": None,  # written as bytes below
    "sandbox-escape": lambda: HEAD + "  a: ${{ ().__class__.__base__.__subclasses__() }}\n",
    "big-range": lambda: HEAD + "  a: ${{ range(10**9) | list | length }}\n",
}
BUGS = {
    "merge-key-bomb": (_merge_bomb, "product bug: `<<:` merge keys are flattened by _Builder.merge_sources() "
                       "without counting toward MAX_NODES, so 7 levels of 20 aliased merges take minutes and "
                       "gigabytes; fix: count merged pairs against MAX_NODES (and de-duplicate sources)"),
    "deep-flow-nesting": (lambda: HEAD + "  a: " + "[" * 5000 + "]" * 5000 + "\n",
                          "product bug: PyYAML composes nested nodes recursively, so 5000 levels raise "
                          "RecursionError before MAX_DEPTH is checked: 'internal error', exit 1; fix: check "
                          "the depth on the event stream (yaml.parse) before composing, exit 2 positioned"),
    "deep-block-nesting": (lambda: HEAD + "".join("  " * i + f"k{i}:\n" for i in range(1, 3000)) + "  " * 3000
                           + "v: 1\n", "product bug: as deep-flow-nesting, with block mappings"),
    "huge": (lambda: HEAD + "".join(f"  v{i}: [{i}, {i}, {i}, 'some text {i}']\n" for i in range(120_000)),
             "product bug: no size cap before parsing; a 5 MB manifest is composed by the pure-Python "
             "loader (~45 s here) before MAX_NODES stops it; fix: refuse manifests over a few MiB up front"),
    "jinja-memory-bomb": (lambda: HEAD + "  a: ${{ 'a' * 10**8 }}\n",
                          "product bug: the sandbox does not bound operator results, so `'a' * 10**8` "
                          "allocates ~430 MB (10**9: several GB); fix: intercepted_binops for * and ** "
                          "with a size limit on the result"),
}


def _validate_bounded(tmp_path: Path, text: str | bytes):
    path = tmp_path / "m.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return cli(tmp_path, ["validate", "m.yaml"], timeout=15, memory_limit=2 << 30)


def _assert_rejected_clearly(done) -> None:
    assert_clean_output(done)
    assert done.code == 2, f"exit {done.code}: {done.stderr[-1500:]}"
    assert re.search(POSITIONED, done.stderr, re.M), done.stderr[-1500:]
    assert done.seconds < 10, f"took {done.seconds:.1f}s"
    assert done.peak_rss_kb < 200 * 1024, f"peak RSS {done.peak_rss_kb // 1024} MB"


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_manifests_are_rejected_clearly(tmp_path, case):
    text = PLAIN_UTF16 if case == "utf16-manifest" else HOSTILE[case]()
    _assert_rejected_clearly(_validate_bounded(tmp_path, text))
    assert not (tmp_path / "pwned").exists()


def test_a_python_tag_on_a_collection_never_runs_code(tmp_path):
    """A tag on a list or mapping is dropped (the value stays plain data); nothing is constructed.
    (On a scalar the same tag is an error; the two are inconsistent, but neither runs code.)"""
    done = _validate_bounded(tmp_path, HEAD + "  a: !!python/object/apply:os.system ['touch pwned']\n")
    assert_clean_output(done)
    assert done.code in (0, 2)
    assert not (tmp_path / "pwned").exists()


PLAIN_UTF16 = (HEAD + "  a: 1\n").encode("utf-16")


@pytest.mark.parametrize("case", list(BUGS))  # once product bugs, now fixed: each keeps its reproducer
def test_exploding_manifests_are_rejected_clearly(tmp_path, case):
    done = _validate_bounded(tmp_path, BUGS[case][0]())
    if case == "merge-key-bomb":  # the same anchor merged 20 times is merged once: small, and valid
        assert_clean_output(done)
        assert done.code == 0, done.stderr[-1500:]
        assert done.peak_rss_kb < 200 * 1024
        return
    _assert_rejected_clearly(done)
