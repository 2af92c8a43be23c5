"""Shared pytest fixtures for Gradient Explosion Lab.

Fixtures (use them by name in any test under tests/):

* ``repo_root`` (session) -> ``pathlib.Path`` of the repository root.
* ``chromium_path`` (session) -> ``str`` path of Debian's Chromium (/usr/bin/chromium).
  Skips the test when Chromium is missing, or fails it when the ``CI`` environment
  variable is set, so a CI machine without a browser cannot pass by skipping.
* ``streamlit_server`` (module) -> ``str`` base URL such as ``http://127.0.0.1:54321``
  of ``app.py`` served by a real ``streamlit run`` subprocess, on a run store of its own
  (``GEL_DATA_DIR``). Started once per test module (~7 s on a busy two-core machine), so
  one module's runs never show on another's pages nor hold its training slots; stopped,
  with any run still going, at the module's end. Its output: ``SERVER_LOGS[base_url]``.
* ``browser`` (session) -> a Playwright ``Browser`` on that Chromium (headless).
* ``browser_page`` (function) -> a fresh Playwright ``Page`` (viewport 1400x1000) in its
  own browser context; after the test, pass or fail, Stop is pressed on it if its run is
  still live (``end_runs``), then it is closed. Combine with ``streamlit_server``:
  ``browser_page.goto(streamlit_server)``.

* ``at`` (function) -> the lab (app.py) in a Streamlit ``AppTest``, not run yet; every runner is stopped after the
  test, which fails if a training thread is still alive.
* ``runners`` (function) -> a list; append each ``Runner`` a test makes, and it is stopped after the test.

Mark real-browser tests with ``@pytest.mark.browser``.

An autouse fixture clears Streamlit's ``st.cache_resource`` and ``st.cache_data`` before
every test that runs with Streamlit already imported, so ``AppTest`` runs do not share
cached engines or data between tests, and puts back the ``__main__`` module an AppTest replaces.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apptest_helpers import wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHROMIUM_MISSING = f"Chromium not found at {CHROMIUM_PATH}; install it with: sudo apt-get install -y chromium"
SERVER_START_TIMEOUT_S = 60.0
VIEWPORT = {"width": 1400, "height": 1000}
SERVER_LOGS: dict[str, Path] = {}  # base URL -> the output of the server serving it
STOP_BUTTON = ".st-key-btn_stop:not([data-stale='true']) button"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_log(path: Path, limit: int = 20_000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no server output>"
    return text[-limit:] if text else "<no server output>"


@pytest.fixture(autouse=True)
def _clear_streamlit_caches() -> Iterator[None]:
    """Clear Streamlit caches before each test; free when Streamlit was never imported.

    Afterwards put back ``sys.modules["__main__"]``: an AppTest run leaves its script module there, and a process
    pool started later (the stability map's local backend) would re-run that temporary script in every worker.
    """
    st = sys.modules.get("streamlit")
    if st is not None:
        st.cache_resource.clear()
        st.cache_data.clear()
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture
def at():
    """The lab (app.py) in an AppTest, not run yet; afterwards every runner is stopped, and a training thread
    still alive fails the test."""
    from streamlit.testing.v1 import AppTest

    from tests.apptest_helpers import APP
    from training.manager import get_manager

    app = AppTest.from_file(APP, default_timeout=30)
    yield app
    get_manager().stop_all(timeout=5.0)
    assert not [r for r in get_manager().runners() if r.alive], "a training thread outlived its test"


@pytest.fixture
def runners() -> Iterator[list]:
    """The runners a test makes (``runners.append(r)``), each stopped afterwards: no training thread outlives it."""
    made = []
    yield made
    for r in made:
        assert r.stop(timeout=5.0), f"the runner of {r.id} did not stop within 5 s"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not os.access(CHROMIUM_PATH, os.X_OK):
        if _in_ci():
            pytest.fail(f"CI is set and {CHROMIUM_MISSING}", pytrace=False)
        pytest.skip(CHROMIUM_MISSING)
    return CHROMIUM_PATH


@pytest.fixture(scope="module")
def streamlit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Serve the app (serve.py: app.py plus its live route) with `streamlit run` on a free loopback port and a run
    store of its own; yield its base URL."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    SERVER_LOGS[base_url] = log_path
    data_dir = tmp_path_factory.mktemp("gel-data-server")
    cmd = [
        sys.executable, "-m", "streamlit", "run", "serve.py",
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GEL_DATA_DIR": str(data_dir)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(
                f"streamlit exited with code {proc.returncode} before it was healthy.\n"
                f"command: {' '.join(cmd)}\n--- server output ---\n{_read_log(log_path)}",
                pytrace=False,
            )
        try:
            with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as resp:
                return resp.read().strip() == b"ok"
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    try:
        try:
            wait_until(healthy, SERVER_START_TIMEOUT_S, f"{base_url}/_stcore/health to answer 'ok'", every=0.25)
        except AssertionError as e:
            pytest.fail(f"{e}\n--- server output ---\n{_read_log(log_path)}", pytrace=False)
        yield base_url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


@pytest.fixture(scope="session")
def browser(chromium_path: str):
    """A headless Playwright Chromium browser shared by the whole test session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def end_runs(context) -> None:
    """Press Stop on every page of ``context`` whose run is still live, and wait for the button to go grey: a test
    that failed half-way must not keep its training slot (the server's cap) from the tests after it."""
    from playwright.sync_api import Error as PlaywrightError

    def stopped(page) -> bool:
        button = page.locator(STOP_BUTTON)
        if not button.count() or not button.first.is_enabled():
            return True
        try:
            button.first.click(timeout=5_000)
        except PlaywrightError:
            pass  # redrawn under the click: try again
        return False

    for page in context.pages:
        if not page.is_closed():
            wait_until(lambda p=page: stopped(p), 30, f"the run on {page.url} to stop", every=0.5)


@pytest.fixture
def browser_page(browser):
    """A fresh page (viewport 1400x1000) in its own context; its run stopped and the page closed after the test."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        yield page
    finally:
        try:
            end_runs(context)
        finally:
            page.close()
            context.close()


@pytest.fixture(scope="session", autouse=True)
def _temp_run_store_and_no_live_threads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the run store (``GEL_DATA_DIR``) at a temp folder for the whole suite, so nothing is written to
    ./data; at the end stop every run manager and fail the session if a training, sweep, store-writer or
    watchdog thread is still alive."""
    data_dir = tmp_path_factory.mktemp("gel-data")
    old = os.environ.get("GEL_DATA_DIR")
    os.environ["GEL_DATA_DIR"] = str(data_dir)
    try:
        yield data_dir
    finally:
        if old is None:
            os.environ.pop("GEL_DATA_DIR", None)
        else:
            os.environ["GEL_DATA_DIR"] = old
    if "training.runner" not in sys.modules:
        return  # nothing was trained in this session
    from training.manager import shutdown_all
    from training.runner import live_threads

    shutdown_all(timeout=5.0)
    deadline = time.monotonic() + 5.0  # a thread outside any manager gets a short grace to end on its own
    for t in live_threads():
        t.join(max(deadline - time.monotonic(), 0.0))
    alive = [t.name for t in live_threads()]
    if alive:
        pytest.fail(f"{len(alive)} thread(s) still alive at the end of the test suite: {', '.join(alive)}; "
                    "stop every Runner (runner.stop()) and sweep job (job.stop()), and shut down every RunManager "
                    "you start", pytrace=False)


@pytest.fixture
def one_torch_thread():
    """One torch thread, as the lab trains: two threads on a shared machine are slower, and the numbers are the
    same. Modules that train lessons use it for every test (``pytestmark``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """GEL_DATA_DIR set before the manager singleton is (re)created; it is shut down and restored after."""
    from training import manager as M

    d = tmp_path / "data"
    monkeypatch.setenv("GEL_DATA_DIR", str(d))
    monkeypatch.setattr(M, "_manager", None)
    yield d
    if M._manager is not None:
        assert M._manager.shutdown()
