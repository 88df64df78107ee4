"""Minimal PNG encoding and decoding (8-bit RGB/RGBA, non-interlaced), standard library only.

Enough for the stand-in renderer to draw views, for the render stage to check every PNG it
receives, and for the judge's gray-background statistics.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PngError(ValueError):
    pass


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int  # 3 = RGB, 4 = RGBA
    pixels: bytes  # rows top to bottom, `channels` bytes per pixel

    def pixel(self, x: int, y: int) -> tuple[int, ...]:
        at = (y * self.width + x) * self.channels
        return tuple(self.pixels[at:at + self.channels])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode(width: int, height: int, pixels: bytes, channels: int = 3, level: int = 6) -> bytes:
    """PNG bytes of `pixels` (row-major, `channels` bytes per pixel), filter type 0 on every row."""
    if len(pixels) != width * height * channels:
        raise PngError(f"expected {width * height * channels} bytes of pixels, got {len(pixels)}")
    stride = width * channels
    raw = b"".join(b"\x00" + pixels[y * stride:(y + 1) * stride] for y in range(height))
    colour_type = {3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, level)) + _chunk(b"IEND", b"")


def solid(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    return encode(width, height, bytes(rgb) * (width * height))


def read_header(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, without decompressing."""
    if not data.startswith(SIGNATURE) or data[12:16] != b"IHDR":
        raise PngError("not a PNG file")
    return struct.unpack(">II", data[16:24])


def check(data: bytes, max_pixels: int = 64_000_000) -> tuple[int, int]:
    """Check a PNG's structure without inflating its image data (chunks, CRCs, a supported
    IHDR, some IDAT); returns its width and height. For files whose data `verify` already
    checked when they were received, at a small part of its cost."""
    width, height, _, _ = _structure(data, max_pixels, rgb_only=False)
    return width, height


def verify(data: bytes, max_pixels: int = 64_000_000) -> tuple[int, int]:
    """Check a PNG end to end without unfiltering (chunks, CRCs, image data length); returns its
    width and height. Cheap enough to run on every view a renderer returns."""
    width, height, channels, raw = _inflate(data, max_pixels, rgb_only=False)
    return width, height


def decode(data: bytes, max_pixels: int = 64_000_000) -> Image:
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG (filter types 0-4)."""
    width, height, channels, raw = _inflate(data, max_pixels, rgb_only=True)
    return Image(width, height, channels, _unfilter(raw, width, height, channels))


_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # grey, RGB, grey+alpha, RGBA


def _structure(data: bytes, max_pixels: int, rgb_only: bool) -> tuple[int, int, int, list[bytes]]:
    """Width, height, channels and the IDAT bodies, after checking every chunk up to IEND."""
    if not data.startswith(SIGNATURE):
        raise PngError("not a PNG file")
    pos, header, idat = len(SIGNATURE), None, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length or len(data) < pos + 12 + length:
            raise PngError("truncated PNG chunk")
        if zlib.crc32(kind + body) & 0xFFFFFFFF != struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]:
            raise PngError(f"bad CRC in {kind.decode('latin-1')} chunk")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise PngError("PNG without IHDR or IDAT")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (_CHANNELS if not rgb_only else (2, 6)) or interlace != 0:
        raise PngError(f"unsupported PNG (bit depth {depth}, colour type {colour}, interlace {interlace})")
    if width == 0 or height == 0 or width * height > max_pixels:
        raise PngError(f"unsupported PNG size {width}x{height}")
    return width, height, _CHANNELS[colour], idat


def _inflate(data: bytes, max_pixels: int, rgb_only: bool) -> tuple[int, int, int, bytes]:
    width, height, channels, idat = _structure(data, max_pixels, rgb_only)
    expected = height * (width * channels + 1)
    try:
        raw = zlib.decompressobj().decompress(b"".join(idat), expected + 1)
    except zlib.error as exc:
        raise PngError(f"corrupt PNG data: {exc}") from None
    if len(raw) < expected:
        raise PngError("truncated PNG data")
    return width, height, channels, raw


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> bytes:
    stride = width * bpp
    out = bytearray(height * stride)
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            for i in range(stride):
                line[i] = (line[i] + previous[i]) & 0xFF
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = previous[i], previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        elif kind != 0:
            raise PngError(f"unknown PNG filter type {kind}")
        out[y * stride:(y + 1) * stride] = line
        previous = line
    return bytes(out)
