"""A fake Hugging Face Hub and ModelScope on 127.0.0.1, speaking the routes their real clients call.

Hugging Face: ``GET /api/models/<repo>[/revision/<rev>]`` (siblings with size, blobId and LFS sha256),
``HEAD|GET /<repo>/resolve/<rev>/<file>`` (ETag, X-Repo-Commit, Content-Length, Range).
ModelScope: ``GET /api/v1/models/<repo>/repo/files`` (Path, Size, Sha256) and
``GET /api/v1/models/<repo>/repo?Revision=..&FilePath=..`` (Range).

It counts requests and bytes per file and fails on demand: a hub down (503), a connection dropped or
stalled after N bytes of a file, a corrupted body.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from weights.registry import Defaults, ModelCard, Resolution, get_card

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_SUFFIXES = (".safetensors", ".ckpt", ".pth", ".bin", ".pt")
HF, MS = "huggingface", "modelscope"

FLASHVSR_REPO = "test-org/FlashVSR-v1.1"
TINY_REPO = "video-studio/tiny-wan"
FLASHVSR_FILES = {
    "diffusion_pytorch_model_streaming_dmd.safetensors": 1024 * 1024,
    "LQ_proj_in.ckpt": 96 * 1024,
    "TCDecoder.ckpt": 160 * 1024,
    "Wan2.1_VAE.pth": 256 * 1024,
    "posi_prompt.pth": 8 * 1024,
}
BIG_FILE = "diffusion_pytorch_model_streaming_dmd.safetensors"
CHUNK = 64 * 1024


def flashvsr_card(**changes: object) -> ModelCard:
    """A FlashVSR-shaped upscale card whose repo the fake hub serves on both hubs."""
    card = ModelCard(
        id="test-flashvsr",
        name="FlashVSR (test files)",
        task="upscale",
        pipeline="FlashVSR",
        description="random bytes in FlashVSR's file layout",
        fps=16,
        size_multiple=16,
        max_frames=33,
        defaults=Defaults(resolution="x4", frames=9, steps=1, guidance=1.0),
        resolutions=(Resolution("x4", 64, 64),),
        huggingface=FLASHVSR_REPO,
        modelscope=FLASHVSR_REPO,
        allow_patterns=(*FLASHVSR_FILES, "README.md"),
    )
    return dataclasses.replace(card, **changes)


def tiny_repo_card() -> ModelCard:
    """The tiny-wan card without its builder, so it downloads from the (fake) hubs like any other model."""
    return dataclasses.replace(get_card("tiny-wan"), builder=None)


def point_clients_at(url: str) -> dict[str, str]:
    """Environment that sends both hub clients to ``url`` (what a mirror user sets)."""
    return {"HF_ENDPOINT": url, "MODELSCOPE_ENDPOINT": url, "HF_HUB_DISABLE_TELEMETRY": "1"}


@dataclass(frozen=True)
class ServedFile:
    path: str
    data: bytes

    @property
    def lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES) or len(self.data) > 10_000

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_sha1(self) -> str:
        return hashlib.sha1(f"blob {len(self.data)}\0".encode() + self.data).hexdigest()


@dataclass
class Faults:
    """What to break: hubs that answer 503, and per-file drops, stalls and corruptions (each used once)."""

    down: set[str] = field(default_factory=set)
    drop_after: dict[str, int] = field(default_factory=dict)
    stall_after: dict[str, int] = field(default_factory=dict)
    corrupt: Counter = field(default_factory=Counter)
    release: threading.Event = field(default_factory=threading.Event)


class FakeHub:
    """Serves repos (``repo_id -> folder``) as both hubs; ``url`` is the endpoint for either client."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, ServedFile]] = {}
        self.faults = Faults()
        self.requests: Counter = Counter()
        self.bytes_served: Counter = Counter()
        self.transfers: dict[str, list[tuple[int, int]]] = {}
        self.log: list[str] = []
        self.lock = threading.Lock()
        self.server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_repo(self, repo_id: str, folder: Path) -> None:
        folder = Path(folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        self.repos[repo_id] = {
            p.relative_to(folder).as_posix(): ServedFile(p.relative_to(folder).as_posix(), p.read_bytes())
            for p in files
        }

    def reset(self) -> None:
        """Clear counters and faults between tests."""
        with self.lock:
            self.faults.release.set()
            self.faults = Faults()
            self.requests.clear()
            self.bytes_served.clear()
            self.transfers.clear()
            self.log.clear()

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def close(self) -> None:
        self.faults.release.set()
        self.server.shutdown()
        self.server.server_close()

    # -- routes -------------------------------------------------------------------------------------

    def hf_info(self, repo_id: str) -> dict:
        return {
            "id": repo_id,
            "modelId": repo_id,
            "sha": COMMIT,
            "private": False,
            "siblings": [
                {"rfilename": f.path, "size": len(f.data), "blobId": f.sha256 if f.lfs else f.git_sha1}
                | ({"lfs": {"size": len(f.data), "sha256": f.sha256, "pointerSize": 134}} if f.lfs else {})
                for f in self.repos[repo_id].values()
            ],
        }

    def hf_tree(self, repo_id: str) -> list[dict]:
        return [
            {"type": "file", "path": f.path, "size": len(f.data), "oid": f.git_sha1}
            | ({"lfs": {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}} if f.lfs else {})
            for f in self.repos[repo_id].values()
        ]

    def range_starts(self, path: str) -> list[int]:
        """Where each GET of ``path`` started (0, or the Range a resuming client asked for)."""
        return [start for start, _ in self.transfers.get(path, [])]

    def ms_files(self, repo_id: str) -> dict:
        files = [
            {
                "Name": f.path.rsplit("/", 1)[-1],
                "Path": f.path,
                "Size": len(f.data),
                "Sha256": f.sha256,
                "Type": "blob",
                "IsLFS": f.lfs,
                "Revision": COMMIT,
            }
            for f in self.repos[repo_id].values()
        ]
        return {"Code": 200, "Data": {"Files": files}, "Message": "success", "Success": True}

    def find_repo(self, rest: str) -> tuple[str, str] | None:
        """Split ``owner/name/<tail>`` into a known repo id and the tail."""
        for repo_id in self.repos:
            if rest == repo_id or rest.startswith(repo_id + "/"):
                return repo_id, rest[len(repo_id) + 1 :]
        return None


class _QuietServer(ThreadingHTTPServer):
    """Threads die with the test; a client hanging up mid-file (cancel, kill) is expected, not an error."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return None

        def do_HEAD(self) -> None:
            self.route(head=True)

        def do_GET(self) -> None:
            self.route(head=False)

        def route(self, head: bool) -> None:
            url = urlsplit(self.path)
            path, query = unquote(url.path), parse_qs(url.query)
            family = MS if path.startswith("/api/v1/") else HF
            with hub.lock:
                hub.log.append(f"{self.command} {self.path}")
            if family in hub.faults.down:
                return self.send_json({"error": f"{family} is down"}, status=503)
            if path.startswith("/api/v1/models/"):
                return self.modelscope(path[len("/api/v1/models/") :], query, head)
            if path.startswith("/api/models/"):
                found = hub.find_repo(path[len("/api/models/") :])
                if found is None:
                    return self.send_json({"error": "Repository not found"}, status=404, repo_missing=True)
                repo_id, tail = found
                route = "tree" if tail.startswith("tree/") else "info"
                with hub.lock:
                    hub.requests[(HF, route)] += 1
                return self.send_json(hub.hf_tree(repo_id) if route == "tree" else hub.hf_info(repo_id))
            found = hub.find_repo(path.lstrip("/"))
            match = re.fullmatch(r"resolve/([^/]+)/(.+)", found[1]) if found else None
            if not found or not match or match.group(2) not in hub.repos[found[0]]:
                return self.send_json({"error": "Entry not found"}, status=404, repo_missing=not found)
            self.send_file(HF, hub.repos[found[0]][match.group(2)], head)

        def modelscope(self, rest: str, query: dict, head: bool) -> None:
            repo_and_tail = re.fullmatch(r"(.+)/repo(/files)?", rest)
            found = hub.find_repo(repo_and_tail.group(1)) if repo_and_tail else None
            if found is None or found[1]:
                return self.send_json({"Code": 404, "Message": "model not found", "Success": False}, 404)
            repo_id = found[0]
            if repo_and_tail.group(2):
                with hub.lock:
                    hub.requests[(MS, "files")] += 1
                return self.send_json(hub.ms_files(repo_id))
            file = hub.repos[repo_id].get(query.get("FilePath", [""])[0])
            if file is None:
                return self.send_json({"Code": 404, "Message": "file not found", "Success": False}, 404)
            self.send_file(MS, file, head)

        def send_json(self, body: dict | list, status: int = 200, repo_missing: bool = False) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if repo_missing:
                self.send_header("X-Error-Code", "RepoNotFound")
            self.end_headers()
            self.wfile.write(data)

        def send_file(self, family: str, file: ServedFile, head: bool) -> None:
            data = file.data
            start, end = 0, len(data) - 1
            header = self.headers.get("Range")
            if header and (m := re.fullmatch(r"bytes=(\d+)-(\d*)", header.strip())):
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else end
            partial = bool(header) and not head
            self.send_response(206 if partial else 200)
            etag = file.sha256 if file.lfs else file.git_sha1
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Accept-Ranges", "bytes")
            if file.lfs:
                self.send_header("X-Linked-Etag", f'"{etag}"')
                self.send_header("X-Linked-Size", str(len(data)))
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            body = data[start : end + 1]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with hub.lock:
                hub.requests[(family, file.path, "HEAD" if head else "GET")] += 1
                if head:
                    return
                transfer = len(hub.transfers.setdefault(file.path, []))
                hub.transfers[file.path].append((start, 0))
                if hub.faults.corrupt[file.path] > 0:
                    hub.faults.corrupt[file.path] -= 1
                    body = bytes([body[0] ^ 0xFF]) + body[1:] if body else body
                cut = hub.faults.drop_after.pop(file.path, None)
                stall = hub.faults.stall_after.pop(file.path, None)
                release = hub.faults.release
            limit = next((n for n in (cut, stall) if n is not None), None)
            sent = body if limit is None else body[: max(limit - start, 0)]
            self.write_counted(file.path, sent, transfer)
            if limit is not None:
                if stall is not None:
                    release.wait(30)
                self.close_connection = True
                self.connection.shutdown(2)

        def write_counted(self, path: str, data: bytes, transfer: int, block: int = 64 * 1024) -> None:
            for offset in range(0, len(data), block):
                piece = data[offset : offset + block]
                self.wfile.write(piece)
                self.wfile.flush()
                with hub.lock:
                    hub.bytes_served[path] += len(piece)
                    start, sent = hub.transfers[path][transfer]
                    hub.transfers[path][transfer] = (start, sent + len(piece))

    return Handler
