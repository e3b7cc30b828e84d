"""The long parts of the reliability suite: load, fairness, crashes, memory and a soak.

Each part starts what it needs (a real ``python app.py`` on a loopback port with its own data
folder, or writer processes on one review database), drives it like users would and prints what
it measured. Nothing here is tuned to pass: the figures go to the README as printed.

    python scripts/reliability.py load         # 16 clients x 50 comparisons: errors, p50/p95 latency
    python scripts/reliability.py starvation   # a small image's wait behind two 10-minute clips
    python scripts/reliability.py crash        # kill -9 during 8 writers, 5 rounds: lost / duplicated
    python scripts/reliability.py memory       # server memory over three 40-megapixel uploads
    python scripts/reliability.py soak --minutes 30   # server memory over a long run
    python scripts/reliability.py all

``--db URL`` runs the writers (and the app) on another database, e.g. PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FAN = ROOT.parent / "shared" / "data" / "fan_audio" / "data"


# ---------------------------------------------------------------------- an app process
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """A real ``python app.py`` on a free port with its own data folder (removed at exit)."""

    root = ROOT  # the checkout whose app.py runs (--app-root: another one, for a before/after)

    def __init__(self, data: Path, db: str | None = None, *args: str) -> None:
        self.port = _free_port()
        env = {**os.environ, "DECODEMO_DATA_DIR": str(data), "GRADIO_ANALYTICS_ENABLED": "False"}
        if db:
            env["DECODEMO_DB_URL"] = db
        self.log = open(data / "app.log", "w")
        self.proc = subprocess.Popen([sys.executable, str(self.root / "app.py"), "--port", str(self.port), *args],
                                     cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/"
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the app exited: see {data / 'app.log'}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                break
            except OSError:
                if time.monotonic() - t0 > 300:
                    raise SystemExit("the app did not answer within 300 s")
                time.sleep(0.5)
        self.start_seconds = time.monotonic() - t0

    def rss_mb(self) -> float:
        """The server process's resident memory now (MiB)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _images(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    from decodemo.data.synthetic import make_texture

    out = []
    for i in range(n):
        img, _ = make_texture(np.random.default_rng([900, i]), size=256, defect=("crack" if i % 3 == 0 else None))
        out.append(folder / f"part_{i:03d}.png")
        Image.fromarray(img).save(out[-1])
    return out


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# ---------------------------------------------------------------------- parts
def load(args, tmp: Path) -> dict:
    """``--clients`` clients, each ``--per-client`` comparisons of small images, all at once."""
    from gradio_client import handle_file

    app = App(tmp, args.db, "--no-warm-up")
    try:
        files = _images(tmp, 24)
        app.client().predict(handle_file(str(files[0])), domain="texture", api_name="/compare")  # models loaded
        latencies, errors, lock = [], [], threading.Lock()

        def client_loop(k: int) -> None:
            c = app.client()
            for j in range(args.per_client):
                p = files[(k * 7 + j) % len(files)]
                t0 = time.perf_counter()
                try:
                    res, _ = c.predict(handle_file(str(p)), domain="texture", api_name="/compare")
                    assert len(res["methods"]) == 3
                    with lock:
                        latencies.append(time.perf_counter() - t0)
                except Exception as exc:  # noqa: BLE001 - every failure is counted
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        out = {"clients": args.clients, "per_client": args.per_client, "comparisons": len(latencies),
               "errors": len(errors), "p50_s": round(_pct(latencies, 50), 2), "p95_s": round(_pct(latencies, 95), 2),
               "max_s": round(max(latencies), 2) if latencies else None, "wall_s": round(wall, 1),
               "per_second": round(len(latencies) / wall, 2), "server_rss_mb": round(app.rss_mb())}
        if errors:
            out["first_errors"] = errors[:3]
        return out
    finally:
        app.close()


def _long_clip(path: Path, seconds: float) -> str:
    """A ``seconds`` long clip: a fan recording looped (or a synthetic hum without the data)."""
    import soundfile as sf

    sources = sorted(FAN.glob("ON_*.wav")) if FAN.is_dir() else []
    if sources:
        y, sr = sf.read(sources[0], dtype="float32")
        y = np.tile(y, int(np.ceil(seconds * sr / len(y))))[: int(seconds * sr)]
        domain = "fan"
    else:
        from decodemo.data.synthetic import SAMPLE_RATE, make_hum

        y, _ = make_hum(np.random.default_rng(3), seconds=seconds, sample_rate=SAMPLE_RATE)
        sr, domain = SAMPLE_RATE, "hum"
    sf.write(path, y, sr)
    return domain


def starvation(args, tmp: Path) -> dict:
    """Two ``--clip-minutes`` clips at once, then small images one after another: their waits."""
    from gradio_client import handle_file

    app = App(tmp, args.db)  # models loaded at start, as `python app.py` does
    try:
        (small,) = _images(tmp, 1)
        domain = _long_clip(tmp / "long_a.wav", args.clip_minutes * 60)
        _long_clip(tmp / "long_b.wav", args.clip_minutes * 60)
        c = app.client()
        c.predict(handle_file(str(small)), domain="texture", api_name="/compare")  # image models loaded
        alone = []
        for _ in range(3):
            t0 = time.perf_counter()
            c.predict(handle_file(str(small)), domain="texture", api_name="/compare")
            alone.append(time.perf_counter() - t0)
        done: dict[str, float] = {}

        def long_job(name: str) -> None:
            t0 = time.perf_counter()
            app.client().predict(handle_file(str(tmp / name)), domain=domain, api_name="/compare")
            done[name] = time.perf_counter() - t0

        jobs = [threading.Thread(target=long_job, args=(n,)) for n in ("long_a.wav", "long_b.wav")]
        for j in jobs:
            j.start()
        time.sleep(args.settle)
        behind = []
        while any(j.is_alive() for j in jobs) and len(behind) < args.small_requests:
            t0 = time.perf_counter()
            c.predict(handle_file(str(small)), domain="texture", api_name="/compare")
            behind.append(time.perf_counter() - t0)
            time.sleep(1.0)
        for j in jobs:
            j.join()
        base = statistics.median(alone)
        return {"clip_minutes": args.clip_minutes, "clip_domain": domain, "small_alone_s": round(base, 2),
                "small_behind_clips_s": [round(v, 2) for v in behind],
                "max_wait_s": round(max(behind) - base, 2) if behind else None,
                "long_clips_s": {k: round(v, 1) for k, v in done.items()}}
    finally:
        app.close()


WRITER = r"""
import json, os, sys, uuid
sys.path.insert(0, sys.argv[1])
from decodemo.store import ReviewStore
store = ReviewStore(sys.argv[2] or None, data_dir=sys.argv[3])
item, me, log = int(sys.argv[4]), sys.argv[5], sys.argv[6]
fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
while True:
    rid = uuid.uuid4().hex
    os.write(fd, f"try {rid}\n".encode()); os.fsync(fd)
    r = store.submit_review(item, me, "anomalous", note=rid, request_id=rid)
    os.write(fd, f"ack {rid} {r['id']}\n".encode()); os.fsync(fd)
"""


def crash(args, tmp: Path) -> dict:
    """``--writers`` processes write reviews (each acknowledged one logged after it returned);
    all are killed with SIGKILL at a random moment, ``--rounds`` times. Then every request that
    was tried (acknowledged or not) is sent again with the same request id, as a client would
    after a crash; no acknowledged review may be missing and none stored twice."""
    from decodemo.store import ReviewStore
    from decodemo.store import records
    from decodemo.store.schema import Item

    data = tmp / "data"
    store = ReviewStore(args.db, data_dir=data)
    with store.session() as s:  # one item every writer reviews
        item = Item(sha256=uuid.uuid4().hex * 2, name="x.png", file_path="files/x.png", modality="image",
                    domain="texture", height=8, width=8, uploaded_by="script")
        s.add(item)
        s.commit()
        item_id = item.id
    logs = []
    for r in range(args.rounds):
        procs = []
        for w in range(args.writers):
            log = tmp / f"writer_{r}_{w}.log"
            logs.append((log, f"writer{w}"))
            procs.append(subprocess.Popen([sys.executable, "-c", WRITER, str(ROOT), args.db or "", str(data),
                                           str(item_id), f"writer{w}", str(log)],
                                          env={**os.environ, "OMP_NUM_THREADS": "1"}))
        t0 = time.monotonic()  # the writers are writing once each has its log (after its imports)
        while not all((tmp / f"writer_{r}_{w}.log").exists() for w in range(args.writers)):
            if time.monotonic() - t0 > 300:
                raise SystemExit("the writers did not start within 300 s")
            time.sleep(0.1)
        time.sleep(random.uniform(args.min_seconds, args.max_seconds))
        for p in procs:
            p.send_signal(signal.SIGKILL)
        for p in procs:
            p.wait()
    tried, acked = {}, set()
    for log, me in logs:
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "try":
                tried[parts[1]] = me
            elif len(parts) >= 3 and parts[0] == "ack":
                acked.add(parts[1])
    for rid, me in tried.items():  # the retries after the crash: same request, same id
        store.submit_review(item_id, me, "anomalous", note=rid, request_id=rid)
    with store.session() as s:
        notes = [h["note"] for h in records.history(s, item_id, None)]
    counts: dict[str, int] = {}
    for n in notes:
        counts[n] = counts.get(n, 0) + 1
    store.close()
    return {"writers": args.writers, "rounds": args.rounds, "acknowledged": len(acked), "tried": len(tried),
            "lost": sum(1 for rid in acked if rid not in counts),
            "duplicated": sum(1 for v in counts.values() if v > 1), "stored": len(notes)}


def _big_png(path: Path, megapixels: float = 40.0) -> None:
    from PIL import Image

    w = int(np.sqrt(megapixels * 1e6 * 1.6))
    h = int(megapixels * 1e6 / w)
    img = Image.new("RGB", (w, h), (128, 132, 140))
    img.paste((90, 60, 50), (w // 3, h // 3, w // 3 + w // 20, h // 3 + h // 20))
    img.save(path, optimize=True)


def memory(args, tmp: Path) -> dict:
    """The server's memory before and after each of three uploads of a ~40-megapixel PNG."""
    from gradio_client import handle_file

    app = App(tmp, args.db, "--no-warm-up")
    try:
        (small,) = _images(tmp, 1)
        c = app.client()
        c.predict(handle_file(str(small)), domain="texture", api_name="/compare")
        big = tmp / "big.png"
        _big_png(big)
        rss, disk = [round(app.rss_mb())], _dir_kb(tmp / "files")
        for _ in range(3):
            res, _ = c.predict(handle_file(str(big)), domain="texture", api_name="/compare")
            rss.append(round(app.rss_mb()))
        return {"file_kb": round(big.stat().st_size / 1024), "working_size": res["input_shape"], "rss_mb": rss,
                "growth_mb": rss[-1] - rss[0],
                "disk_mb_per_comparison": round((_dir_kb(tmp / "files") - disk) / 3 / 1024, 1)}
    finally:
        app.close()


def _dir_kb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1024 if folder.is_dir() else 0.0


def soak(args, tmp: Path) -> dict:
    """``--minutes`` of comparisons (images and 5 s clips, two clients), the server's memory
    sampled every 30 s."""
    from gradio_client import handle_file

    import soundfile as sf

    from decodemo.data.synthetic import SAMPLE_RATE, make_hum

    app = App(tmp, args.db, "--no-warm-up")
    try:
        files = _images(tmp, 40)
        clips = []
        for i in range(6):
            y, _ = make_hum(np.random.default_rng([70, i]), seconds=5.0, sample_rate=SAMPLE_RATE)
            clips.append(tmp / f"hum_{i}.wav")
            sf.write(clips[-1], y, SAMPLE_RATE)
        stop, count, errors = time.monotonic() + args.minutes * 60, [0], []

        def loop(k: int) -> None:
            c = app.client()
            j = 0
            while time.monotonic() < stop:
                j += 1
                p, dom = (clips[j % len(clips)], "hum") if j % 5 == 0 else (files[(k * 13 + j) % len(files)], "texture")
                try:
                    c.predict(handle_file(str(p)), domain=dom, api_name="/compare")
                    count[0] += 1
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=loop, args=(k,)) for k in range(2)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        samples = []
        while any(t.is_alive() for t in threads):
            samples.append((round((time.monotonic() - t0) / 60, 1), round(app.rss_mb())))
            time.sleep(30)
        for t in threads:
            t.join()
        third = [r for m, r in samples if m >= args.minutes / 3]
        return {"minutes": args.minutes, "comparisons": count[0], "errors": len(errors),
                "rss_mb_every_30s": samples, "rss_after_first_third_mb": [min(third), max(third)] if third else None,
                "results_dir_kb": round(_dir_kb(Path(tempfile.gettempdir()) / "decodemo-results"))}
    finally:
        app.close()


PARTS = {"load": load, "starvation": starvation, "crash": crash, "memory": memory, "soak": soak}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", choices=[*PARTS, "all"])
    ap.add_argument("--db", default=None, help="a database URL (default: SQLite in each part's folder)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--per-client", type=int, default=50)
    ap.add_argument("--clip-minutes", type=float, default=10.0)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds between the long clips and the small requests")
    ap.add_argument("--small-requests", type=int, default=5)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--max-seconds", type=float, default=6.0)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--app-root", type=Path, default=None, help="run another checkout's app.py (a before/after)")
    args = ap.parse_args(argv)
    if args.app_root is not None:
        App.root = args.app_root.resolve()
    for name in (PARTS if args.part == "all" else [args.part]):
        with tempfile.TemporaryDirectory(prefix=f"decodemo-{name}-") as tmp:
            t0 = time.perf_counter()
            out = PARTS[name](args, Path(tmp))
            out["seconds"] = round(time.perf_counter() - t0, 1)
            print(json.dumps({name: out}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
