"""The built book's browser assets, vendored so its pages work offline.

Jupyter Book 1.x pages load three things from CDNs when they are opened: MathJax 3 (the math), require.js and
the Jupyter widgets' html-manager ``embed-amd.js`` (the embedded widget state, e.g. chapter 04's keyframe browser).
:func:`vendor_assets` downloads the same packages from the npm registry (pinned versions, checked against the
registry's sha512 integrity), unpacks the files the pages need into ``book/_vendor/`` (ignored by git) and
``_config.yml`` copies them into the built book (``html_static_path``, ``html_extra_path``) and points the pages
there (``mathjax_path``, ``nb_ipywidgets_js``).  ``.ci/setup.sh`` runs it::

    python -m neuroclips_core vendor-assets            # idempotent: a stamp skips what is already there
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import tarfile
import urllib.request
from pathlib import Path
from typing import NamedTuple

REGISTRY = "https://registry.npmjs.org"
STAMP = ".vendor.json"


class NpmAsset(NamedTuple):
    """Files of one npm package: ``package/<prefix>...`` in the tarball -> ``<vendor>/<dest>/...``."""

    name: str
    version: str
    integrity: str         # the registry's dist.integrity (sha512, base64)
    prefix: str            # the folder (or single file) inside the tarball's package/ to take
    dest: str              # where it goes under the vendor folder
    skip_suffixes: tuple = (".map",)

    @property
    def tarball_url(self) -> str:
        base = self.name.split("/")[-1]
        return f"{REGISTRY}/{self.name}/-/{base}-{self.version}.tgz"


#: the versions the CDN links of Jupyter Book 1.x / myst-nb name (MathJax 3, require.js 2.3.4, html-manager 1.0.6)
ASSETS = (
    NpmAsset("mathjax", "3.2.2", "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+"
             "geW0OhGw==", "es5/", "static/mathjax/", (".map", ".md")),
    NpmAsset("requirejs", "2.3.4", "sha512-qPD5gRrj6kGQ0ZySAJgqbArkaDqPMbQIT0zSZDkIv1mfA17w/tR2Faq5l2qqRf2CdQx6FWln9nUr"
             "gd2UDzb19A==", "require.js", "static/require.js"),
    NpmAsset("@jupyter-widgets/html-manager", "1.0.6", "sha512-+Mn+Ra8wyIHrYaUpfmf9A3dsLkt/NuwzPQN8sthdxBD35VV5cOJbpmg"
             "MhNR27n/rmP3mKyEe0PWCJrtZrXTXDQ==", "dist/", "root/@jupyter-widgets/html-manager/dist/"),
)
#: the files the pages load, relative to the vendor folder.  ``static/`` is copied into the built ``_static/``
#: (``html_static_path``), ``root/`` into the built book's root (``html_extra_path``): the widget manager finds its
#: fonts next to the module path requirejs gives it, ``./@jupyter-widgets/html-manager/dist/`` beside the page.
ENTRY_POINTS = ("static/mathjax/tex-mml-chtml.js", "static/require.js",
                "root/@jupyter-widgets/html-manager/dist/embed-amd.js")


def default_vendor_dir() -> Path:
    from .config import project_root

    return project_root() / "book" / "_vendor"


def _check_integrity(data: bytes, asset: NpmAsset) -> None:
    algo, _, want = asset.integrity.partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != want:
        raise RuntimeError(f"{asset.tarball_url}: integrity mismatch (expected {asset.integrity}, got {algo}-{got}); "
                           f"the download is corrupt or the registry changed the package: nothing was written")


def _fetch(asset: NpmAsset, timeout: float = 60) -> bytes:
    try:
        with urllib.request.urlopen(asset.tarball_url, timeout=timeout) as response:
            return response.read()
    except OSError as e:
        raise RuntimeError(f"could not download {asset.tarball_url} ({e}); the book's pages need it to show math "
                           f"and widgets offline; check access to the npm registry and run "
                           f"`python -m neuroclips_core vendor-assets` again") from None


def unpack(data: bytes, asset: NpmAsset, vendor: Path) -> list[Path]:
    """Write the asset's files from tarball bytes into ``vendor`` (through a temp folder and a rename, so a failed
    unpack leaves no half-written asset); returns the files written."""
    vendor = Path(vendor)
    target = vendor / asset.dest.rstrip("/")
    tmp = vendor / f".tmp-{asset.name.replace('/', '_')}"
    shutil.rmtree(tmp, ignore_errors=True)
    written = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            inner = member.name.removeprefix("package/")
            if not member.isfile() or not inner.startswith(asset.prefix) or inner.endswith(asset.skip_suffixes):
                continue
            rel = inner[len(asset.prefix):] if asset.prefix.endswith("/") else Path(inner).name
            if ".." in Path(rel).parts:
                raise RuntimeError(f"{asset.tarball_url}: refusing the path {member.name!r} outside the package")
            out = tmp / rel if asset.prefix.endswith("/") else tmp
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(member).read())
            written.append(target / rel if asset.prefix.endswith("/") else target)
    if not written:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"{asset.tarball_url}: no file under package/{asset.prefix}; the package layout changed")
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(target)
    return written


def vendor_assets(vendor: str | Path | None = None, *, fetch=_fetch, force: bool = False) -> dict:
    """Download and unpack :data:`ASSETS` into ``vendor`` (default ``book/_vendor``) unless its stamp says
    they are there; returns ``{package: "version"}``.  ``fetch(asset) -> bytes`` is the download (tests replace it).

    Raises:
        RuntimeError: a download that fails or does not match its pinned integrity (nothing is written for it).
    """
    vendor = Path(vendor) if vendor is not None else default_vendor_dir()
    want = {a.name: a.version for a in ASSETS}
    stamp = vendor / STAMP
    if not force and stamp.is_file() and json.loads(stamp.read_text()) == want \
            and all((vendor / e).is_file() for e in ENTRY_POINTS):
        return want
    vendor.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    for asset in ASSETS:
        data = fetch(asset)
        _check_integrity(data, asset)
        unpack(data, asset, vendor)
    missing = [e for e in ENTRY_POINTS if not (vendor / e).is_file()]
    if missing:
        raise RuntimeError(f"vendor_assets: {missing} are missing after unpacking; the packages' layout changed")
    stamp.write_text(json.dumps(want))
    return want
