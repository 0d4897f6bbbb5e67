"""The keyframe browser in a real browser: voila serves a notebook that shows it (with a live kernel, as JupyterLab
does), headless Debian chromium driven by playwright renders the page, and the test reads what the page shows, clicks
"worst" and checks that the page follows.  Needs the ``chromium`` package (``.ci/setup.sh`` installs it where it
can; the test is skipped, with the reason, where there is none)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install "
                                                         "chromium); .ci/setup.sh installs it where it can")
N = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited with {proc.returncode}:\n{proc.stdout.read()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"voila did not listen on port {port} within {timeout} s")


def test_browser_renders_and_follows_clicks_in_chromium(tmp_path):
    import nbformat
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(0)
    score = rng.permutation(N) / N                              # distinct scores: best and worst are unambiguous
    best, worst = int(np.argmax(score)), int(np.argmin(score))
    np.savez(tmp_path / "clips.npz", gt=rng.integers(0, 256, (N, 6, 16, 16, 3), dtype=np.uint8),
             keyframes=rng.integers(0, 256, (N, 16, 16, 3), dtype=np.uint8),
             videos=rng.integers(0, 256, (N, 16, 16, 16, 3), dtype=np.uint8), score=score)
    source = "\n".join([
        "import numpy as np",
        "from neuroclips_core.viz import BrowserData, KeyframeBrowser",
        f"z = np.load({str(tmp_path / 'clips.npz')!r})",
        "data = BrowserData(gt=z['gt'], keyframes=z['keyframes'], videos=z['videos'], scores={'ssim': z['score']},",
        f"                  captions=[f'caption of clip {{i}}' for i in range({N})])",
        "b = KeyframeBrowser(data, display_px=64)",
        "b.set_sort('ssim', descending=True)",
        "b"])
    notebook = tmp_path / "browse.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, notebook)

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}",
                             "--Voila.ip=127.0.0.1"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_port(port, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            failed, errors = [], []
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
            status = page.get_by_text("sorted by ssim descending")
            status.wait_for(timeout=120_000)
            # sorting keeps the selection on clip 0, now at its rank in the descending order
            rank0 = int(np.sum(score > score[0])) + 1
            assert status.inner_text().startswith(f"clip 0 · {rank0} of {N} shown")
            page.get_by_role("button", name="best").click()
            page.get_by_text(f"clip {best} · 1 of {N} shown").wait_for(timeout=30_000)
            assert page.get_by_text(f"keyframe caption: caption of clip {best}").count() == 1
            # the panels are real, decoded images (GIF/PNG bytes through the Image widget)
            widths = page.eval_on_selector_all(".widget-image", "els => els.map(e => e.naturalWidth)")
            assert len(widths) >= 3 and all(w == 64 for w in widths)

            page.get_by_role("button", name="worst").click()
            page.get_by_text(f"clip {worst} · {N} of {N} shown").wait_for(timeout=30_000)
            assert page.get_by_text(f"keyframe caption: caption of clip {worst}").count() == 1
            page.screenshot(path=str(tmp_path / "browser.png"), full_page=True)
            browser.close()
        # voila's page asks a CDN for Font Awesome (widget icons; none are used here), unreachable offline; every
        # request to the server itself (the page, the widget manager, the kernel's messages) must succeed
        local = [u for u in failed if u.startswith(f"http://127.0.0.1:{port}")]
        assert not local, f"requests to voila that failed: {local}"
        assert not errors, f"errors on the page: {errors}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
