"""Payload building, validation, the 778-byte limit, SCALE framing and tolerant decoding."""

from __future__ import annotations

import json

import pytest

from runner404.chain import codec
from runner404.chain.codec import (CIPHERTEXT_OVERHEAD, MAX_ENCRYPTED_BYTES, MAX_PAYLOAD_BYTES,
                                   PayloadError, compact_len, decode_revealed, frame)
from runner404.chain.pallet import node_form
from runner404.errors import ExitCode

SHA = "3f786850e387550fdab836ed7e6dc881de23001b"


# --- payloads --------------------------------------------------------------------------------

def test_payloads_use_python_default_separators():
    assert codec.commit_payload(SHA) == '{"commit": "3f786850e387550fdab836ed7e6dc881de23001b"}'
    assert codec.repo_cdn_payload("mokabetrade/ansible-foundry", "https://cdn.example.com/m") == \
        '{"repo": "mokabetrade/ansible-foundry", "cdn_url": "https://cdn.example.com/m"}'
    assert codec.payload_json({"b": 1, "a": [1, 2]}) == '{"b": 1, "a": [1, 2]}'


def test_commit_hash_must_be_full_40_hex():
    assert codec.validate_commit_hash(SHA.upper()) == SHA.upper()
    for bad in ("", SHA[:39], SHA + "0", SHA[:39] + "g", " " + SHA[:39], "main", None):
        with pytest.raises(PayloadError) as err:
            codec.validate_commit_hash(bad)  # type: ignore[arg-type]
        assert str(err.value) == (f"Invalid commit hash: {bad}. Expected the full 40-character "
                                  "hex commit SHA (e.g. '3f786850e387550fdab836ed7e6dc881de23001b')")
        assert err.value.exit_code == ExitCode.FAILED


@pytest.mark.parametrize("repo", ["user/repo", "Org.Name/model_v-2.1", "a/b", "..._/-.-"])
def test_repo_accepts_owner_slash_name(repo):
    assert codec.validate_repo(repo) == repo


@pytest.mark.parametrize("repo", ["", "repo", "a/b/c", "/repo", "user/", "us er/repo", "user/re po",
                                  "user/repo!", "üser/repo", "user\\repo", "user/repo\n"])
def test_repo_rejections_use_the_classic_message(repo):
    with pytest.raises(PayloadError) as err:
        codec.validate_repo(repo)
    assert str(err.value) == (f"Invalid git repository format: {repo}. Expected format: "
                              "'user/repo' (e.g. 'mokabetrade/ansible-foundry')")


@pytest.mark.parametrize("url", ["http://cdn.example.com", "https://cdn.example.com/a/b?x=1",
                                 "https://127.0.0.1:9000/bucket", "HTTPS://Example.COM/x"])
def test_cdn_url_accepts_http_and_https_with_a_host(url):
    assert codec.validate_cdn_url(url) == url


@pytest.mark.parametrize("url", ["", "cdn.example.com/x", "ftp://cdn.example.com/x", "https://",
                                 "https:///path", "file:///tmp/x", "https://exa mple.com/x",
                                 "https://example.com/x y", "http://[::1/x", "https://:80/x"])
def test_cdn_url_rejections_use_the_classic_message(url):
    with pytest.raises(PayloadError) as err:
        codec.validate_cdn_url(url)
    assert str(err.value) == (f"Invalid CDN URL format: {url}. Expected a valid URL with scheme "
                              "(http:// or https://)")


def test_payload_builders_validate_their_values():
    with pytest.raises(PayloadError, match="Invalid commit hash"):
        codec.commit_payload("abc")
    with pytest.raises(PayloadError, match="Invalid git repository format"):
        codec.repo_cdn_payload("nope", "https://cdn.example.com")
    with pytest.raises(PayloadError, match="Invalid CDN URL format"):
        codec.repo_cdn_payload("a/b", "cdn.example.com")


# --- size limit ------------------------------------------------------------------------------

def _repo_payload_of(size: int) -> tuple[str, str]:
    base = len(codec.payload_json({"repo": "o/r", "cdn_url": "https://x.io/"}))
    url = "https://x.io/" + "a" * (size - base)
    return "o/r", url


def test_778_bytes_is_the_largest_payload_and_fits_1024_ciphertext_bytes():
    repo, url = _repo_payload_of(MAX_PAYLOAD_BYTES)
    text = codec.repo_cdn_payload(repo, url)
    assert len(text.encode()) == 778
    assert len(frame(text)) + CIPHERTEXT_OVERHEAD == MAX_ENCRYPTED_BYTES == 1024
    repo, url = _repo_payload_of(779)
    with pytest.raises(PayloadError) as err:
        codec.repo_cdn_payload(repo, url)
    message = str(err.value)
    assert message.startswith("Commitment payload is 779 bytes of UTF-8 JSON; the chain accepts "
                              "at most 778 bytes")
    assert "779 + 246 bytes, must fit in 1024" in message


def test_size_counts_utf8_bytes_not_characters():
    assert codec.check_size("é" * 389) == 778
    with pytest.raises(PayloadError, match="is 780 bytes"):
        codec.check_size("é" * 390)
    assert codec.check_size(b"x" * 778) == 778
    assert codec.check_size("") == 0


# --- SCALE compact length --------------------------------------------------------------------

@pytest.mark.parametrize(("n", "expected"), [
    (0, "00"), (1, "04"), (54, "d8"), (63, "fc"), (64, "0101"), (112, "c101"), (778, "290c"),
    (16383, "fdff"), (16384, "02000100"), (2**30 - 1, "feffffff"), (2**30, "0300000040"),
])
def test_compact_len_vectors(n, expected):
    assert compact_len(n).hex() == expected


def test_compact_len_rejects_bad_lengths():
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError):
            compact_len(bad)  # type: ignore[arg-type]


def test_frame_prefixes_the_utf8_length():
    assert frame(b"") == b"\x00"
    assert frame("{}") == b"\x08{}"
    assert frame("é") == b"\x08\xc3\xa9"  # 2 bytes, not 1 character
    text = "x" * 64
    assert frame(text) == b"\x01\x01" + text.encode()
    assert frame(bytearray(b"ab")) == b"\x08ab"


# --- tolerant decoding -----------------------------------------------------------------------

PAYLOAD = '{"repo": "org/model", "cdn_url": "https://cdn.example.com/m"}'


@pytest.mark.parametrize("form", ["hex", "HEX", "bytes", "bytearray", "list", "tuple"])
def test_decode_revealed_accepts_every_form(form):
    framed = frame(PAYLOAD)
    value = {"hex": "0x" + framed.hex(), "HEX": "0X" + framed.hex().upper(), "bytes": framed,
             "bytearray": bytearray(framed), "list": list(framed), "tuple": tuple(framed)}[form]
    assert decode_revealed(value) == PAYLOAD


def test_decode_revealed_text_form_from_the_node():
    # 64 bytes: prefix 0x01 0x01 is valid UTF-8, so a node returns the value as text.
    text = '{"commit": "' + "a" * 50 + '"}'
    assert len(text) == 64
    framed = frame(text)
    assert node_form(framed) == "\x01\x01" + text
    assert decode_revealed("\x01\x01" + text) == text
    short = '{"commit": "abc"}'  # < 32 bytes: one printable prefix byte
    assert node_form(frame(short)) == "D" + short
    assert decode_revealed("D" + short) == short


def test_decode_revealed_hex_form_from_the_node():
    text = codec.commit_payload(SHA)  # 54 bytes: prefix 0xd8 is not valid UTF-8
    assert node_form(frame(text)) == "0x" + frame(text).hex()
    assert decode_revealed(node_form(frame(text))) == text


def test_every_payload_length_round_trips_through_the_node_form():
    forms = set()
    for n in range(1, MAX_PAYLOAD_BYTES + 1):
        text = '"' + "x" * (n - 2) + '"' if n >= 2 else "1"
        value = node_form(frame(text))
        forms.add("hex" if value.startswith("0x") else "text")
        assert decode_revealed(value) == text, n
    assert forms == {"hex", "text"}


def test_decode_revealed_empty_and_none():
    for empty in ("", b"", [], "0x", None):
        assert decode_revealed(empty) == ""


def test_decode_revealed_skips_by_mode():
    assert decode_revealed(b"\x00abc") == "abc"  # mode 0: 1 byte
    assert decode_revealed(b"\x01\x00abc") == "abc"  # mode 1: 2 bytes
    assert decode_revealed(b"\x02\x00\x00\x00abc") == "abc"  # mode 2: 4 bytes
    assert decode_revealed(b"\x03\x00\x00\x00abc") == "abc"  # mode 3: 4 bytes (classic rule)
    assert decode_revealed(b"\x01") == ""  # shorter than its prefix


def test_unframed_json_comes_back_mangled():
    raw = b'{"repo":"org/model","cdn_url":"https://c"}'
    assert decode_revealed(raw) == 'po":"org/model","cdn_url":"https://c"}'
    with pytest.raises(ValueError):
        json.loads(decode_revealed(raw))


def test_decode_revealed_ignores_invalid_utf8():
    assert decode_revealed(frame(b"ab\xffcd")) == "abcd"
    assert decode_revealed("0x" + frame(b"\xc3(").hex()) == "("


def test_decode_revealed_bad_hex_is_read_as_text():
    assert decode_revealed("0xzz") == "xzz"
    assert decode_revealed("0xabc") == "xabc"  # odd length


def test_decode_revealed_rejects_unknown_types():
    with pytest.raises(TypeError):
        decode_revealed(12)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        decode_revealed([256])
