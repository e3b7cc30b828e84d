"""Two app processes on one database agree: roles, bounds and thresholds seen by every replica.

Two real ``python app.py`` processes (logins ``admin`` and ``ana``, ``admin`` the only admin)
share one review database (a SQLite file, or a fresh PostgreSQL database when
``DECODEMO_TEST_PG_URL`` is set) and one data folder, as replicas behind a load balancer would.
The reviewer may not move a threshold; the admin moves one on the first replica; the second
judges its very next comparison against it. Without any login a third process refuses every
threshold change.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decodemo.data.synthetic import make_texture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("DECODEMO_TEST_PG_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fresh_pg_url() -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(PG_URL)
    name = f"decodemo_replicas_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def _start(port: int, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--no-warm-up", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(proc: subprocess.Popen, port: int, timeout: float = 240.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited ({proc.returncode}):\n{proc.stdout.read()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the app did not answer in time")


@pytest.fixture(scope="module", params=BACKENDS)
def replicas(request, tmp_path_factory):
    data = tmp_path_factory.mktemp("replicas")
    url = f"sqlite:///{data / 'reviews.db'}" if request.param == "sqlite" else _fresh_pg_url()
    env = {**os.environ, "DECODEMO_DATA_DIR": str(data), "DECODEMO_DB_URL": url, "OMP_NUM_THREADS": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    for k in ("DECODEMO_ADMINS", "DECODEMO_OPEN_THRESHOLDS", "DECODEMO_AUTH", "OAUTH_CLIENT_ID"):
        env.pop(k, None)
    logins = ["--auth", "admin:secret-1", "--auth", "ana:secret-2", "--admin", "admin"]
    ports = [_free_port() for _ in range(2)]
    procs = [_start(ports[0], env, *logins), _start(ports[1], env, *logins)]
    try:
        for p, port in zip(procs, ports):
            _wait(p, port)
        img, _ = make_texture(np.random.default_rng([31, 2]), size=256, defect=None)
        Image.fromarray(img).save(data / "part.png")
        yield [f"http://127.0.0.1:{p}/" for p in ports], data / "part.png"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def _invad_threshold(client, part) -> float:
    from gradio_client import handle_file

    res, _ = client.predict(handle_file(str(part)), domain="texture", api_name="/compare")
    return next(m["threshold"] for m in res["methods"] if m["method"] == "invad")


def test_two_replicas_on_one_database_judge_against_the_same_thresholds(replicas):
    from gradio_client import Client

    (url_a, url_b), part = replicas
    admin_a = Client(url_a, auth=("admin", "secret-1"), verbose=False)
    ana_b = Client(url_b, auth=("ana", "secret-2"), verbose=False)
    before = _invad_threshold(ana_b, part)

    with pytest.raises(Exception, match="ana is a reviewer, not an admin"):
        ana_b.predict("texture/invad", before * 1.05, "fewer false alarms", api_name="/apply_threshold")
    with pytest.raises(Exception, match="outside what its normal reference allows"):
        admin_a.predict("texture/invad", 1e300, "try", api_name="/apply_threshold")
    new = round(before * 1.05, 6)
    change = admin_a.predict("texture/invad", new, "fewer false alarms", api_name="/apply_threshold")
    assert change["changed_by"] == "admin" and change["new_threshold"] == pytest.approx(new)

    assert _invad_threshold(ana_b, part) == pytest.approx(new)  # the other replica, at once
    assert _invad_threshold(admin_a, part) == pytest.approx(new)
