"""The Dagster UI in a real browser, against a real ``dagster dev`` of this code location.

Once per module: a 200-row demo corpus and a policy whose visual-reliance bound no model can
meet are written to a temporary folder, ``dagster dev`` serves the code location on 127.0.0.1
with a temporary DAGSTER_HOME, and two runs are launched through the GraphQL client (one
source audited end to end, then mix and train, whose checkpoint check fails). Headless Debian
Chromium (Selenium with the system chromedriver, never Selenium Manager) then opens the global
asset lineage and the failed check's page; screenshots land in ``test-artifacts/ui/``
(git-ignored) beside the ``dagster dev`` log. Every process started here is stopped in the
fixtures' teardown, whatever the outcome.
"""

import json
import os
import re
import signal
import socket
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.browser import headless_chromium, require_browser
from tests.models import DEMO_MODEL_YAML

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "test-artifacts" / "ui"
SCREENSHOTS = ("asset-graph.png", "failed-check.png", "first-page.png", "checkpoint-page.png")
WORLD: dict[str, str] = {}  # the environment dagster_ui serves (its store, its sources)
SOURCE = "llava"
ASSETS = ("raw_sft", "scored_sft", "duplicate_index", "audited_sft", "training_mix",
          "training_checkpoint", "training_rl_probe", "rl_ready_checkpoint")
UNCHECKED = {"duplicate_index",  # evidence for the audit, checked where it is used (the mix)
             "rl_ready_checkpoint"}  # a release record: its gate checks what it consumes
# Downstream of the failed blocking check: the run stops before them (its check never ran).
BLOCKED = ("training_rl_probe", "rl_ready_checkpoint")
FAILED_ASSET, FAILED_CHECK = "training_checkpoint", "training_checkpoint_visual_reliance"
IMPOSSIBLE_RELIANCE = 2.0  # accuracy with minus without the image never exceeds 1
# One process per run instead of one per step: each step process re-imports torch and Dagster.
TINY_TRAINER = {"max_steps": 4, "batch_size": 32, "probe_images": 12}
SERVER_TIMEOUT_S = 240
RUN_TIMEOUT_S = 420
PAGE_TIMEOUT_S = 90
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _world(root: Path) -> dict[str, str]:
    """Corpus, sources file, failing policy and DAGSTER_HOME; the env ``dagster dev`` needs."""
    from assets.partitions import register_sources
    from dagster import DagsterInstance
    from demo.generate import DemoConfig, generate
    from integrity.decide.policy import DEFAULT_POLICY

    generate(root / "demo", DemoConfig(rows=200, seed=3))
    sources = root / "sources.yaml"
    sources.write_text(DEMO_MODEL_YAML
                       + f"sources:\n  - {{name: {SOURCE}, uri: {root / 'demo' / 'llava.jsonl'}}}\n")
    policy = yaml.safe_load(DEFAULT_POLICY.read_text())
    policy["checkpoint"]["min_visual_reliance"] = IMPOSSIBLE_RELIANCE
    (root / "policy.yaml").write_text(yaml.safe_dump(policy))
    home = root / "dagster_home"
    home.mkdir()
    # The instance file `make ui` uses: nux off, no "Join the Dagster community" dialog.
    shutil.copy(REPO / "deploy" / "dagster.dev.yaml", home / "dagster.yaml")
    # Registered before the daemon starts, so sources_sensor finds nothing new and launches
    # no ingest run of its own beside the runs this test launches.
    with DagsterInstance.from_config(str(home)) as instance:
        register_sources(instance, str(sources))
    env = {key: value for key, value in os.environ.items() if not key.startswith("INTEGRITY_")}
    env.update(DAGSTER_HOME=str(home), INTEGRITY_SOURCES=str(sources),
               INTEGRITY_STORE=str(root / "store"), INTEGRITY_POLICY=str(root / "policy.yaml"),
               HF_HUB_OFFLINE="1", GX_ANALYTICS_ENABLED="false")
    return env


def _default_signals() -> None:
    # A shell's background job inherits SIGINT ignored, and dagster dev maps SIGTERM onto
    # SIGINT's handler: restore both, or neither would stop it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop(process: subprocess.Popen) -> None:
    """Ctrl-C for the whole process group (dagster dev shuts its services down), then kill."""
    for sig, wait_s in ((signal.SIGINT, 60), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGINT:  # the leader is gone: kill what it left behind (run workers)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


_LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def _wait_until_served(url: str, process: subprocess.Popen, log: Path) -> None:
    """Until the webserver answers and the code location has loaded (or fail with the log)."""
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"dagster dev exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"dagster dev not serving after {SERVER_TIMEOUT_S} s:\n"
                        f"{log.read_text()[-3000:]}")
        try:
            entries = _graphql(url, _LOCATIONS)["workspaceOrError"]["locationEntries"]
        except (OSError, KeyError, TypeError, ValueError):
            entries = []
        if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
            errors = [entry["locationOrLoadError"] for entry in entries
                      if entry["locationOrLoadError"]["__typename"] == "PythonError"]
            assert not errors, errors
            return
        time.sleep(1)


def _run_to_end(client, job: str, **options) -> str:
    """Submit ``job`` and wait for a terminal status; returns the status name."""
    run_id = client.submit_job_execution(job, **options)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (status := client.get_run_status(run_id).value) not in TERMINAL:
        assert time.monotonic() < deadline, f"{job} run {run_id} still {status}"
        time.sleep(2)
    return status


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory) -> Iterator[str]:
    """``dagster dev`` with one source audited and a checkpoint whose check failed; its URL."""
    require_browser()  # before minutes of set-up, not after
    from dagster_graphql import DagsterGraphQLClient

    env = _world(tmp_path_factory.mktemp("ui"))
    WORLD.update(env)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in SCREENSHOTS:  # a failed run must not leave an older run's pictures behind
        (ARTIFACTS / stale).unlink(missing_ok=True)
    log = ARTIFACTS / "dagster-dev.log"
    port = _free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml",
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_default_signals,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_served(url, process, log)
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        audit = _run_to_end(client, "audit_source",
                            tags={"dagster/partition": SOURCE})
        assert audit == "SUCCESS", f"audit_source [{SOURCE}]: {audit}"
        train = _run_to_end(client, "mix_and_train", run_config={
            "resources": {"trainer": {"config": {"config": TINY_TRAINER}}}})
        assert train == "FAILURE", f"mix_and_train should fail on {FAILED_CHECK}: {train}"
        yield url
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def browser(dagster_ui) -> Iterator:
    """Headless Debian Chromium, wide enough that the lineage graph draws full asset nodes
    (names, check status), not zoomed-out boxes with truncated names."""
    yield from headless_chromium(3200, 1100)


def _text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _wait(driver, predicate, what: str, screenshot: str):
    """Wait for ``predicate(driver)``; on timeout save the screenshot anyway and fail."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, PAGE_TIMEOUT_S, poll_frequency=0.5).until(predicate)
    except TimeoutException:
        driver.save_screenshot(str(ARTIFACTS / screenshot))
        pytest.fail(f"{what} not shown within {PAGE_TIMEOUT_S} s on {driver.current_url}:\n"
                    f"{_text(driver)[:2000]}")


_NODE_TEXTS = ("return Array.from(document.querySelectorAll('svg foreignObject > *'), "
               "n => n.innerText);")
_CHECKS = re.compile(r"Asset checks\s+(\d+) / (\d+) Passed")


def _asset_nodes(driver) -> dict[str, str] | bool:
    """Asset name -> its graph node's text, once every node shows its check status."""
    nodes = {}
    for text in driver.execute_script(_NODE_TEXTS):
        name = text.strip().split("\n", 1)[0]
        if name in ASSETS and (_CHECKS.search(text) or name in UNCHECKED):
            nodes[name] = text
    return nodes if set(nodes) == set(ASSETS) else False


def test_asset_graph_shows_every_asset_and_its_check_status(dagster_ui, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{dagster_ui}/asset-groups")
    # Two asset groups are drawn collapsed; the graph's own shortcut expands all of them.
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "svg foreignObject"),
          "the lineage graph", "asset-graph.png")
    ActionChains(browser).key_down(Keys.ALT).send_keys("e").key_up(Keys.ALT).perform()
    nodes = _wait(browser, _asset_nodes, f"full nodes of {', '.join(ASSETS)}", "asset-graph.png")
    browser.save_screenshot(str(ARTIFACTS / "asset-graph.png"))
    for name, text in nodes.items():
        # The UI marks the steps the failed check stopped as failed, never materialized.
        assert ("Failed" in text.splitlines()) == (name in BLOCKED), (name, text)
        if name in UNCHECKED:
            assert not _CHECKS.search(text), (name, text)
            continue
        passed, total = map(int, _CHECKS.search(text).groups())
        assert total >= 1, (name, text)
        assert (passed < total) == (name in (FAILED_ASSET, *BLOCKED)), (name, text)


def test_failed_check_page_shows_the_check_and_its_failure(dagster_ui, browser):
    browser.get(f"{dagster_ui}/assets/{FAILED_ASSET}?view=checks&checkDetail={FAILED_CHECK}")
    _wait(browser, lambda d: "Evaluation result" in _text(d), f"{FAILED_CHECK}'s latest execution",
          "failed-check.png")
    browser.save_screenshot(str(ARTIFACTS / "failed-check.png"))
    lines = _text(browser).splitlines()
    assert FAILED_CHECK in lines  # the detail pane's heading, in full
    result = lines[lines.index("Evaluation result") + 1:]
    assert "Failed" in result[:6], result[:6]  # the evaluation-result badge
    assert f"(bound >= {IMPOSSIBLE_RELIANCE})" in _text(browser)
    assert "This is a blocking asset check." in lines


def test_the_first_page_opens_without_a_dialog(dagster_ui, browser):
    """`make ui` used to open on Dagster's first-run pop-up; its instance file turns it off."""
    from selenium.webdriver.common.by import By

    browser.get(dagster_ui)
    _wait(browser, lambda d: "Overview" in _text(d) or "Assets" in _text(d), "the first page",
          "first-page.png")
    browser.save_screenshot(str(ARTIFACTS / "first-page.png"))
    assert not browser.find_elements(By.CSS_SELECTOR, "[role=dialog]")


def test_the_checkpoint_page_shows_the_versions_it_consumed(dagster_ui, browser):
    """Which audited versions a checkpoint consumed was a JSON blob: now a table on its page."""
    from integrity.store.versions import VersionStore

    store = VersionStore(WORLD["INTEGRITY_STORE"])
    audited = store.latest("audited_sft", SOURCE)
    browser.get(f"{dagster_ui}/assets/{FAILED_ASSET}")
    _wait(browser, lambda d: "consumed_versions" in _text(d), "the consumed_versions table",
          "checkpoint-page.png")
    _wait(browser, lambda d: audited in _text(d), f"audited version {audited} in the table",
          "checkpoint-page.png")
    browser.save_screenshot(str(ARTIFACTS / "checkpoint-page.png"))
