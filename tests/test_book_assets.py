"""neuroclips_core.book_assets: the vendored browser assets are checked against their pinned integrity, unpacked
whole or not at all, and not downloaded again when the stamp matches (the download itself is replaced here; the
real one runs in .ci/setup.sh, and tests/test_offline_book.py opens a page built with its result)."""
from __future__ import annotations

import base64
import hashlib
import io
import tarfile

import pytest

from neuroclips_core import book_assets
from neuroclips_core.book_assets import NpmAsset, unpack, vendor_assets


def tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def pinned(name, data, prefix, dest):
    return NpmAsset(name, "1.0.0", "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode(), prefix, dest)


@pytest.fixture
def fake_registry(monkeypatch):
    packages = {"a": tarball({"package/dist/x.js": b"x", "package/dist/x.js.map": b"m", "package/README.md": b"r"}),
                "b": tarball({"package/one.js": b"one"})}
    assets = (pinned("a", packages["a"], "dist/", "static/a/"), pinned("b", packages["b"], "one.js", "static/one.js"))
    monkeypatch.setattr(book_assets, "ASSETS", assets)
    monkeypatch.setattr(book_assets, "ENTRY_POINTS", ("static/a/x.js", "static/one.js"))
    calls = []

    def fetch(asset):
        calls.append(asset.name)
        return packages[asset.name]

    return fetch, calls, packages


def test_vendor_unpacks_what_the_pages_need_and_skips_when_stamped(tmp_path, fake_registry):
    fetch, calls, _ = fake_registry
    assert vendor_assets(tmp_path, fetch=fetch) == {"a": "1.0.0", "b": "1.0.0"}
    assert (tmp_path / "static/a/x.js").read_bytes() == b"x" and (tmp_path / "static/one.js").read_bytes() == b"one"
    assert not (tmp_path / "static/a/x.js.map").exists()                    # source maps are left out
    vendor_assets(tmp_path, fetch=fetch)
    assert calls == ["a", "b"]                                              # the stamp matched: no second download
    (tmp_path / "static/one.js").unlink()
    vendor_assets(tmp_path, fetch=fetch)
    assert calls == ["a", "b", "a", "b"] and (tmp_path / "static/one.js").is_file()   # a lost file: fetched again


def test_a_corrupt_download_writes_nothing(tmp_path, fake_registry):
    fetch, _, packages = fake_registry
    with pytest.raises(RuntimeError, match="integrity mismatch"):
        vendor_assets(tmp_path, fetch=lambda asset: packages[asset.name] + b"tampered")
    assert not (tmp_path / "static").exists() and not (tmp_path / book_assets.STAMP).exists()


def test_unpack_refuses_paths_outside_the_package(tmp_path):
    data = tarball({"package/dist/../../evil.js": b"e"})
    with pytest.raises(RuntimeError, match="outside the package"):
        unpack(data, pinned("a", data, "dist/", "static/a/"), tmp_path)
    assert not (tmp_path.parent / "evil.js").exists()


def test_unpack_says_when_the_layout_changed(tmp_path):
    data = tarball({"package/lib/x.js": b"x"})
    with pytest.raises(RuntimeError, match="no file under package/dist/"):
        unpack(data, pinned("a", data, "dist/", "static/a/"), tmp_path)


def test_the_pins_name_registry_tarballs():
    urls = [a.tarball_url for a in book_assets.ASSETS]
    assert "https://registry.npmjs.org/@jupyter-widgets/html-manager/-/html-manager-1.0.6.tgz" in urls
    assert all(a.integrity.startswith("sha512-") for a in book_assets.ASSETS)
