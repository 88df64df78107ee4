"""The VLM client's cache of images as data: URLs: each local file read once while it is in use,
and memory bounded over a run of any length."""

from __future__ import annotations

import base64

from runner404.judge.vlm import ImageCache


def _images(folder, count, size):
    paths = []
    for i in range(count):
        path = folder / f"v{i}.png"
        path.write_bytes(bytes([i]) * size)
        paths.append(path)
    return paths


def test_local_files_become_data_urls_and_urls_pass_through(tmp_path):
    cache = ImageCache()
    path, = _images(tmp_path, 1, 10)
    assert cache.url(path) == "data:image/png;base64," + base64.b64encode(bytes(10)).decode()
    assert cache.url(f"file://{path}") == cache.url(path)
    for url in ("https://cdn.example/p.png", "http://x/y.jpg", "data:image/png;base64,AAAA"):
        assert cache.url(url) == url
    assert len(cache) == 1


def test_a_cached_image_is_not_read_again(tmp_path):
    cache = ImageCache()
    path, = _images(tmp_path, 1, 10)
    first = cache.url(path)
    path.write_bytes(b"changed")  # the render stage writes each file once; the cache trusts that
    assert cache.url(path) == first


def test_the_cache_keeps_the_most_recently_used_images_within_its_budget(tmp_path):
    paths = _images(tmp_path, 50, 3000)  # about 4 KB per data: URL
    url_size = len(ImageCache().url(paths[0]))
    cache = ImageCache(max_bytes=10 * url_size)
    for path in paths:
        cache.url(path)
        cache.url(paths[0])  # kept in use: never evicted
    assert len(cache) == 10 and cache.size <= 10 * url_size
    paths[0].write_bytes(b"changed")
    assert cache.url(paths[0]).endswith(base64.b64encode(bytes(3000)).decode())  # still the cached one
    paths[1].write_bytes(b"changed")  # evicted long ago: read again
    assert cache.url(paths[1]) == "data:image/png;base64," + base64.b64encode(b"changed").decode()


def test_an_image_larger_than_the_budget_is_sent_but_not_kept(tmp_path):
    big, = _images(tmp_path, 1, 3000)
    cache = ImageCache(max_bytes=100)
    assert cache.url(big).startswith("data:image/png;base64,")
    assert len(cache) == 0 and cache.size == 0
