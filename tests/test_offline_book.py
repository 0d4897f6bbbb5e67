"""The built book works offline: a page with math, a figure and an embedded widget, built with the book's own
``_config.yml`` and ``book/_vendor`` (the vendored MathJax, require.js and widget manager), opened in headless Debian
chromium with every non-local request refused.  The page must render its math and its widget, load its images,
and make no request that fails.  Needs ``chromium`` (skipped without it) and the vendored assets (``.ci/setup.sh``
runs ``python -m neuroclips_core vendor-assets``)."""
from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

from neuroclips_core.book_assets import ENTRY_POINTS, default_vendor_dir
from neuroclips_core.config import project_root

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install "
                                                         "chromium); .ci/setup.sh installs it where it can")

PAGE = """\
import ipywidgets as widgets
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot([0, 1, 4, 9])
plt.show()
widgets.IntSlider(value=7, description="clip")
"""


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    import nbformat

    vendor = default_vendor_dir()
    missing = [e for e in ENTRY_POINTS if not (vendor / e).is_file()]
    assert not missing, (f"{vendor}: {missing} are not vendored; run `python -m neuroclips_core vendor-assets` "
                         f"(.ci/setup.sh does)")
    root = project_root()
    book = tmp_path_factory.mktemp("offline") / "book"
    book.mkdir()
    shutil.copy(root / "_config.yml", book / "_config.yml")
    shutil.copytree(vendor, book / vendor.name)                    # the config names book/_vendor/static and root
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: page\n")
    (book / "intro.md").write_text("# Offline\n\nInline math $z_T = \\sqrt{\\bar\\alpha_T}\\, z_0$.\n")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A chapter page\n\n$$\\sqrt{1 - \\bar\\alpha_T}\\,\\epsilon$$"),
        nbformat.v4.new_code_cell(PAGE)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, book / "page.ipynb")
    out = book.parent / "out"
    # CI exports MPLBACKEND=Agg, under which the kernel's plt.show() draws nothing; the chapters switch back to
    # inline through neuroclips_core.notebook, and this page simply runs without the variable
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    run = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(book), "--path-output",
                          str(out), "-W", "-n", "--keep-going"], capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, f"jupyter-book build failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    return out / "_build" / "html"


def test_built_pages_name_no_cdn(built_book):
    html = (built_book / "page.html").read_text()
    assert "widget-state+json" in html                                  # the widget was embedded
    # what the page loads as it opens: script and link tags (thebe's URL sits in a constant used only on a click,
    # and thebe is off in _config.yml)
    remote = re.findall(r'<(?:script|link)[^>]*(?:src|href)="(https?://[^"]+)"', html)
    assert not remote, f"page.html loads from the network: {remote}"
    assert "_static/mathjax/tex-mml-chtml.js" in html and "@jupyter-widgets/html-manager/dist/embed-amd.js" in html


def test_page_renders_offline_in_chromium(built_book, tmp_path):
    from playwright.sync_api import sync_playwright

    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *a: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    local = f"http://127.0.0.1:{server.server_address[1]}/"
    failed, refused = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()

            def route(r):
                if r.request.url.startswith(local):
                    r.continue_()
                else:                               # the network is not there: refuse, and remember what was asked
                    refused.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("requestfailed", lambda req: failed.append(req.url))
            page.goto(local + "page.html", wait_until="load")
            page.wait_for_selector("mjx-container", timeout=30_000)               # MathJax typeset the math
            page.wait_for_selector(".widget-slider, .jupyter-widgets.widget-inline-hbox", timeout=30_000)
            page.wait_for_load_state("networkidle")
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.src, e.complete && e.naturalWidth])")
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
    finally:
        server.shutdown()
    assert not refused, f"the page asked for remote URLs: {refused}"
    assert not failed, f"requests failed: {failed}"
    assert images, "the page has no <img>: the figure cell drew nothing (was MPLBACKEND=Agg seen by the kernel?)"
    assert all(w for _, w in images), f"images not loaded: {[s for s, w in images if not w]}"
    assert shot.stat().st_size > 10_000
