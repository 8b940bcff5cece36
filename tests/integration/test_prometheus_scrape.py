"""A real Prometheus server (Debian's `prometheus`) scrapes a running controller, and per-DIP
weights are queried back through Prometheus' HTTP API. Skipped when `prometheus` is not on PATH
(`make test` installs it as root). Everything runs on loopback, in the test's own directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_admin_http import REPO, free_port

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not on PATH")

CONFIG = """
[controller]
policy = "static"
load_listen = "tcp://127.0.0.1:{load}"
metrics_listen = "127.0.0.1:{metrics}"
admin_listen = ""

[[vip]]
name = "web"
ip = "10.0.0.100"
port = 80
  [[vip.dip]]
  ip = "10.1.3.2"
  port = 8080
  weight = 3
  [[vip.dip]]
  ip = "10.1.4.2"
  port = 8080
  weight = 1
"""

SCRAPE = """
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: p4lb
    static_configs:
      - targets: ["127.0.0.1:{metrics}"]
"""


def started(command: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def stopped(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[str]:
    """A controller and a Prometheus scraping it; yields Prometheus' address."""
    assert PROMETHEUS is not None
    metrics, web = free_port(), free_port()
    config = tmp_path / "lb.toml"
    config.write_text(CONFIG.format(load=free_port(), metrics=metrics))
    scrape = tmp_path / "prometheus.yml"
    scrape.write_text(SCRAPE.format(metrics=metrics))
    controller = started(
        [sys.executable, "-m", "controller", "--config", str(config)],
        tmp_path / "controller.log",
        REPO,
    )
    prometheus = started(
        [
            PROMETHEUS,
            f"--config.file={scrape}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{web}",
        ],
        tmp_path / "prometheus.log",
        tmp_path,
    )
    try:
        yield f"http://127.0.0.1:{web}"
    finally:
        stopped(prometheus)
        stopped(controller)


def query(prometheus: str, expression: str) -> list[dict[str, object]]:
    url = f"{prometheus}/api/v1/query?query={urllib.parse.quote(expression)}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        document = json.loads(answer.read())
    result: list[dict[str, object]] = document["data"]["result"]
    return result


def test_prometheus_scrapes_per_dip_weights_labelled_by_vip_and_dip(scraped: str) -> None:
    deadline = time.monotonic() + 90.0
    found: dict[str, float] = {}
    while len(found) < 2:
        assert time.monotonic() < deadline, "Prometheus never had both DIPs' weights"
        try:
            rows = query(scraped, 'p4lb_dip_weight{vip="web"}')
        except OSError:
            rows = []  # Prometheus is still starting
        for row in rows:
            labels, value = row["metric"], row["value"]
            assert isinstance(labels, dict) and isinstance(value, list)
            found[str(labels["dip"])] = float(value[1])
        time.sleep(0.5)
    # The static policy keeps the configured 3:1, quantised to 2^8.
    assert found == {"10.1.3.2:8080": 192.0, "10.1.4.2:8080": 64.0}
    (up,) = query(scraped, 'up{job="p4lb"}')
    value = up["value"]
    assert isinstance(value, list) and value[1] == "1"
