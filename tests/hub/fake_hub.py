"""A tiny loopback imitation of the Hugging Face Hub, for tests that must not touch the internet.

``FakeHub`` serves model repos held in memory over plain HTTP on ``127.0.0.1`` (standard library only:
``http.server`` + ``threading``), closely enough that the *real* ``huggingface_hub`` client runs
``snapshot_download``, ``hf_hub_download``, ``HfApi.model_info``, ``HfApi.list_repo_tree`` and
``HfApi.get_paths_info`` against it.  Written against, and checked with, ``huggingface_hub`` 2.4.0
(its HTTP layer is ``httpx2``).

Usage
-----
::

    from fake_hub import FakeHub, hub_offline

    repos = {"acme/tiny": {"a" * 40: {"config.json": b"{}", "model.safetensors": b"..."}}}
    with FakeHub(repos) as hub:
        path = huggingface_hub.snapshot_download(
            "acme/tiny", revision="a" * 40, allow_patterns=["*.json"], cache_dir=tmp, endpoint=hub.url
        )
        n = len(hub.requests)
        with hub_offline():                        # or monkeypatch, see "Offline mode" below
            assert huggingface_hub.snapshot_download(
                "acme/tiny", revision="a" * 40, allow_patterns=["*.json"], cache_dir=tmp, endpoint=hub.url
            ) == path
        assert len(hub.requests) == n              # nothing reached the server

``repos`` maps ``repo_id -> {commit_sha: {relative_path: bytes}}``.  Commit shas should be 40 lowercase hex
characters (that is what the client recognises as a pinned commit).  The branch name ``"main"`` resolves to
the *last* commit listed for a repo (dict insertion order).  Any other revision answers ``RevisionNotFound``.

Pointing the client at the server
---------------------------------
* **Recommended:** pass ``endpoint=hub.url`` to every call (``snapshot_download``, ``hf_hub_download``,
  ``HfApi(endpoint=hub.url)``).  ``snapshot_download`` forwards it to each per-file ``hf_hub_download``.
* ``HF_ENDPOINT`` works **only if set before ``huggingface_hub`` is first imported**: the library reads it
  once, at import, into ``huggingface_hub.constants.ENDPOINT`` and ``HUGGINGFACE_CO_URL_TEMPLATE``.  Since the
  server's port is only known once it runs, this means a subprocess (``env={..., "HF_ENDPOINT": hub.url}``).
* In-process, the equivalent of ``HF_ENDPOINT`` is to patch both module attributes (the file URL template is
  built from the endpoint at import time and is not rebuilt)::

      monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
      monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                          hub.url + "/{repo_id}/resolve/{revision}/{filename}")

  ``FakeHub.patch_endpoint(monkeypatch)`` does exactly that.

Offline mode (huggingface_hub 2.4.0)
------------------------------------
``HF_HUB_OFFLINE`` is read from the environment **once, at import**, into
``huggingface_hub.constants.HF_HUB_OFFLINE``; setting the environment variable afterwards has no effect.
Every check goes through ``huggingface_hub.constants.is_offline_mode()``, which returns that module global at
call time (the request hook of the shared ``httpx2`` client raises ``OfflineModeIsEnabled`` from it, and
``snapshot_download`` / ``hf_hub_download`` then fall back to the cache).  So, at runtime::

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

or use the ``hub_offline()`` context manager below, which sets and restores that attribute.
With a pinned 40-hex revision that is fully cached, ``snapshot_download`` then returns
``<cache_dir>/models--<ns>--<name>/snapshots/<sha>`` without any request; a branch name such as ``"main"`` is
resolved through ``refs/main`` in the cache.

Imitated endpoints (model repos only; ``{rev}`` is percent-encoded by the client, e.g. ``refs%2Fpr%2F1``)
------------------------------------------------------------------------------------------------------
``GET /api/models/{repo_id}`` and ``GET /api/models/{repo_id}/revision/{rev}``
    ``HfApi.model_info`` / ``repo_info``; ``snapshot_download`` calls it only when ``revision`` is *not* a
    40-hex commit (to learn the commit sha).  JSON with ``_id``, ``id``, ``modelId``, ``sha``, ``private``,
    ``gated``, ``disabled``, ``tags``, ``downloads``, ``likes``, ``lastModified``, ``createdAt`` and
    ``siblings: [{"rfilename": ...}]`` (plus ``size`` and ``blobId`` when ``?blobs=true``).  ``?expand=...``
    keeps only the listed keys (and ``_id`` / ``id``) like the Hub.
``GET /api/models/{repo_id}/tree/{rev}[/{path}]?recursive=...&expand=...``
    ``HfApi.list_repo_tree``; ``snapshot_download`` always calls it (``recursive=True``) to list the files it
    filters with ``allow_patterns`` / ``ignore_patterns``.  JSON list of
    ``{"type": "file", "oid": <git blob sha1>, "size": n, "path": p}`` and
    ``{"type": "directory", "oid": <sha1>, "size": 0, "path": p}``; one page (no ``Link`` header).
``POST /api/models/{repo_id}/paths-info/{rev}`` (form field ``paths``, repeated)
    ``HfApi.get_paths_info``; same entry format as the tree.
``HEAD`` and ``GET /{repo_id}/resolve/{rev}/{path}``
    ``hf_hub_download`` (one ``HEAD`` for metadata, then one ``GET`` for the bytes).  ``200`` with
    ``X-Repo-Commit: <sha>``, ``ETag: "<git blob sha1>"`` (quoted, as the Hub does for non-LFS files),
    ``Content-Length``, ``Content-Type: application/octet-stream`` and ``Accept-Ranges: bytes``; ``GET``
    honours ``Range: bytes=a-[b]`` (``206`` + ``Content-Range``), which the client uses to resume.

Every file is served as a plain git file: no LFS pointer, no ``302`` to a CDN, no ``X-Linked-Etag`` /
``X-Linked-Size`` and, on purpose, no Xet header (``X-Xet-Hash``, ``X-Xet-Refresh-Route``, ``Link: xet-auth``)
and no ``xetHash`` in tree entries, so the client never takes its Xet download path (``hf_xet`` is not needed).
The cached blob is therefore named after the git blob sha1 (``git hash-object``) of the file.

Errors answer ``404`` with a JSON body ``{"error": ...}`` and the Hub's headers ``X-Error-Code`` /
``X-Error-Message``, which ``huggingface_hub.utils.hf_raise_for_status`` maps to its exceptions:

* unknown repo      -> ``X-Error-Code: RepoNotFound``     -> ``huggingface_hub.errors.RepositoryNotFoundError``
* unknown revision  -> ``X-Error-Code: RevisionNotFound`` -> ``huggingface_hub.errors.RevisionNotFoundError``
* unknown file/path -> ``X-Error-Code: EntryNotFound``    -> ``huggingface_hub.errors.RemoteEntryNotFoundError``
  (the ``X-Repo-Commit`` header is sent too, so the client records the miss under ``.no_exist/``)
* any other route   -> plain ``404`` without error code   -> ``huggingface_hub.errors.HfHubHTTPError``

Note that ``snapshot_download`` swallows ``RepositoryNotFoundError``-type failures only to re-raise them when
nothing is cached, while ``RevisionNotFoundError`` is raised straight away.

Every response carries ``Connection: close``: each request uses a fresh connection, so once the ``with``
block ends no pooled keep-alive connection of the client's shared ``httpx2`` session can still reach a
handler thread.  If ``HTTP_PROXY`` / ``ALL_PROXY`` are set in the environment, add ``127.0.0.1`` to
``NO_PROXY`` (``httpx2`` honours the proxy variables).  After the ``with`` block the port refuses connections;
a client call that then needs the network and finds nothing cached retries for about 20 s before raising
(``LocalEntryNotFoundError``), so keep online calls inside the block.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["FakeHub", "git_blob_sha1", "hub_offline"]

_TIMESTAMP = "2024-01-01T00:00:00.000Z"  # lastModified / createdAt of every fake repo


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file's content (what ``git hash-object`` prints); used as its ETag/oid."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _content_disposition(name: str) -> str:
    """``Content-Disposition`` as the Hub sends it (the client shows ``filename`` in its progress bar)."""
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    return f"inline; filename*=UTF-8''{quote(name)}; filename=\"{ascii_name}\";"


def _tree_sha1(path: str, commit: str) -> str:
    """A stable, made-up object id for a directory (the client only stores it)."""
    return hashlib.sha1(f"tree {commit} {path}".encode()).hexdigest()


@contextlib.contextmanager
def hub_offline(enabled: bool = True) -> Iterator[None]:
    """Switch ``huggingface_hub``'s offline mode at runtime, restoring the previous value on exit.

    Equivalent to ``monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", enabled)``; setting the
    ``HF_HUB_OFFLINE`` environment variable after import has no effect in huggingface_hub 2.4.0.
    """
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = enabled
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


class _HubError(Exception):
    """An error answer: HTTP status plus the Hub's ``X-Error-Code`` (None for a bare 404)."""

    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


class FakeHub:
    """Context manager serving ``repos`` like the Hugging Face Hub on ``http://127.0.0.1:<free port>``.

    ``FakeHub(repos)`` with ``repos = {repo_id: {commit_sha: {relative_path: bytes}}}``.  The revision
    ``"main"`` maps to the last commit of each repo.  Inside ``with FakeHub(repos) as hub:``

    * ``hub.url`` is the endpoint to pass as ``endpoint=`` (``"http://127.0.0.1:PORT"``, no trailing slash);
    * ``hub.requests`` lists ``"METHOD PATH"`` for every request received, in arrival order, with ``PATH`` as
      sent on the request line (percent-encoded, query string included), e.g.
      ``"GET /api/models/acme/tiny/tree/<sha>?recursive=true&expand=false"`` or
      ``"HEAD /acme/tiny/resolve/<sha>/config.json"``.  It stays readable after the ``with`` block; clear it
      (``hub.requests.clear()``) or compare lengths to count only the requests of one call.

    The server runs a ``ThreadingHTTPServer`` in a daemon thread, one thread per request, so it serves
    concurrent clients (``snapshot_download`` itself downloads with up to 8 threads).
    """

    def __init__(self, repos: dict[str, dict[str, dict[str, bytes]]]):
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {
            repo_id: {
                sha: {path.strip("/"): bytes(data) for path, data in files.items()} for sha, files in commits.items()
            }
            for repo_id, commits in repos.items()
        }
        for repo_id, commits in self.repos.items():
            if not commits:
                raise ValueError(f"repo {repo_id!r} has no commit")
        self.url: str = ""
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_HubRequestHandler):
            fake_hub = hub

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=server.serve_forever, name="FakeHub", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving (idempotent).  Called by ``__exit__``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def patch_endpoint(self, monkeypatch: Any) -> None:
        """Make ``self.url`` the default endpoint in-process (what ``HF_ENDPOINT`` does at import time).

        ``monkeypatch`` is pytest's fixture; the patch is undone with it.  Only needed by callers that cannot
        pass ``endpoint=``.
        """
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "ENDPOINT", self.url)
        template = self.url + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)

    def _record(self, line: str) -> None:
        with self._lock:
            self.requests.append(line)

    # ------------------------------------------------------------------ repo model
    def _commit(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]]:
        """(commit sha, files) of ``revision`` in ``repo_id``, or a RepoNotFound / RevisionNotFound error."""
        commits = self.repos.get(repo_id)
        if commits is None:
            raise _HubError(404, "RepoNotFound", "Repository not found")
        if revision in commits:
            return revision, commits[revision]
        if revision == "main":
            sha = list(commits)[-1]
            return sha, commits[sha]
        raise _HubError(404, "RevisionNotFound", "Invalid rev id: " + revision)

    @staticmethod
    def _directories(files: dict[str, bytes]) -> set[str]:
        return {path.rsplit("/", i)[0] for path in files for i in range(1, path.count("/") + 1)}

    def _entry(self, sha: str, files: dict[str, bytes], path: str) -> dict[str, Any]:
        """A tree / paths-info entry, in the Hub's JSON shape."""
        if path in files:
            data = files[path]
            return {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
        return {"type": "directory", "oid": _tree_sha1(path, sha), "size": 0, "path": path}

    def _tree(self, sha: str, files: dict[str, bytes], base: str, recursive: bool) -> list[dict[str, Any]]:
        directories = self._directories(files)
        if base and base not in directories:
            raise _HubError(404, "EntryNotFound", f"{base} does not exist on {sha}", commit=sha)
        prefix = base + "/" if base else ""
        paths = [p for p in sorted(directories | set(files)) if p.startswith(prefix)]
        if not recursive:
            paths = [p for p in paths if "/" not in p[len(prefix):]]
        # The Hub lists directories before files.
        paths.sort(key=lambda p: (p in files, p))
        return [self._entry(sha, files, p) for p in paths]

    def _model_info(self, repo_id: str, sha: str, files: dict[str, bytes], query: dict[str, list[str]]) -> dict:
        blobs = query.get("blobs", ["false"])[-1].lower() == "true"
        siblings = []
        for path in sorted(files):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=len(files[path]), blobId=git_blob_sha1(files[path]))
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0] if "/" in repo_id else None,
            "sha": sha,
            "lastModified": _TIMESTAMP,
            "createdAt": _TIMESTAMP,
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        expand = [v for values in query.get("expand", []) for v in values.split(",") if v]
        if expand:
            info = {k: v for k, v in info.items() if k in {"_id", "id", *expand}}
        return info


def _split_repo(segments: list[str], keywords: tuple[str, ...]) -> tuple[str, str, list[str]] | None:
    """Split ``[ns, name, keyword, rest...]`` (or ``[name, keyword, rest...]``) into (repo_id, keyword, rest)."""
    for n in (2, 1):
        if len(segments) > n and segments[n] in keywords:
            return "/".join(segments[:n]), segments[n], segments[n + 1 :]
    return None


class _HubRequestHandler(BaseHTTPRequestHandler):
    """Routes one request to the ``FakeHub`` it belongs to (set as the ``fake_hub`` class attribute)."""

    fake_hub: FakeHub
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"

    # ---------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr logging
        pass

    def do_HEAD(self) -> None:
        self._handle(send_body=False)

    def do_GET(self) -> None:
        self._handle(send_body=True)

    def do_POST(self) -> None:
        self._handle(send_body=True)

    def _handle(self, send_body: bool) -> None:
        self.fake_hub._record(f"{self.command} {self.path}")
        self.close_connection = True
        body = b""
        if self.command == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        try:
            self._route(body, send_body)
        except _HubError as error:
            payload = json.dumps({"error": error.message}).encode()
            headers = {"Content-Type": "application/json; charset=utf-8"}
            if error.code is not None:
                headers["X-Error-Code"] = error.code
                # Header values must be latin-1 on the wire; keep the message plain ASCII on one line.
                headers["X-Error-Message"] = " ".join(error.message.encode("ascii", "replace").decode().split())
            if error.commit is not None:
                headers["X-Repo-Commit"] = error.commit
            self._send(error.status, payload, headers, send_body)

    def _send(self, status: int, payload: bytes, headers: dict[str, str], send_body: bool) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if send_body and payload:
            self.wfile.write(payload)

    def _send_json(self, data: Any, send_body: bool) -> None:
        self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json; charset=utf-8"}, send_body)

    # ---------------------------------------------------------------- routes
    def _route(self, body: bytes, send_body: bool) -> None:
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        segments = [unquote(s) for s in split.path.strip("/").split("/")] if split.path.strip("/") else []

        if len(segments) >= 3 and segments[:2] == ["api", "models"]:
            self._route_api(segments[2:], query, body, send_body)
        elif (parts := _split_repo(segments, ("resolve",))) is not None and self.command in ("GET", "HEAD"):
            repo_id, _, rest = parts
            if len(rest) < 2:
                raise _HubError(404, None, "Not Found")
            self._resolve(repo_id, rest[0], "/".join(rest[1:]), send_body)
        else:
            raise _HubError(404, None, f"Not Found: {self.command} {split.path}")

    def _route_api(self, segments: list[str], query: dict[str, list[str]], body: bytes, send_body: bool) -> None:
        hub = self.fake_hub
        parts = _split_repo(segments, ("revision", "tree", "paths-info"))
        if parts is None:  # GET /api/models/{repo_id}
            if self.command == "POST" or not 1 <= len(segments) <= 2:
                raise _HubError(404, None, "Not Found")
            repo_id, keyword, rest = "/".join(segments), "revision", ["main"]
        else:
            repo_id, keyword, rest = parts
        if not rest:
            raise _HubError(404, None, "Not Found")
        sha, files = hub._commit(repo_id, rest[0])

        if keyword == "revision" and self.command != "POST":
            self._send_json(hub._model_info(repo_id, sha, files, query), send_body)
        elif keyword == "tree" and self.command != "POST":
            recursive = query.get("recursive", ["false"])[-1].lower() in ("true", "1")
            self._send_json(hub._tree(sha, files, "/".join(rest[1:]).strip("/"), recursive), send_body)
        elif keyword == "paths-info" and self.command == "POST":
            form = parse_qs(body.decode(), keep_blank_values=True)
            wanted = [p.strip("/") for p in form.get("paths", []) + form.get("paths[]", [])]
            known = set(files) | hub._directories(files)
            self._send_json([hub._entry(sha, files, p) for p in wanted if p in known], send_body)
        else:
            raise _HubError(404, None, "Not Found")

    def _resolve(self, repo_id: str, revision: str, path: str, send_body: bool) -> None:
        sha, files = self.fake_hub._commit(repo_id, revision)
        if path not in files:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist on {sha}", commit=sha)
        data = files[path]
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{git_blob_sha1(data)}"',
            "X-Repo-Commit": sha,
            "Accept-Ranges": "bytes",
            "Content-Disposition": _content_disposition(path.rsplit("/", 1)[-1]),
        }
        status, payload = 200, data
        byte_range = self.headers.get("Range", "")
        if self.command == "GET" and byte_range.startswith("bytes=") and "," not in byte_range:
            first, _, last = byte_range[len("bytes=") :].partition("-")
            try:
                start = int(first) if first else max(len(data) - int(last), 0)
                stop = int(last) + 1 if first and last else len(data)
            except ValueError:
                start, stop = 0, len(data)
            if start >= len(data) and len(data) > 0:
                headers["Content-Range"] = f"bytes */{len(data)}"
                self._send(416, b"", headers, send_body)
                return
            stop = min(stop, len(data))
            status, payload = 206, data[start:stop]
            headers["Content-Range"] = f"bytes {start}-{max(stop - 1, start)}/{len(data)}"
        self._send(status, payload, headers, send_body)
