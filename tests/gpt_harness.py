"""Helpers to exercise the gpt-pretrain template: a local shard server and fresh module imports."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skylab.experiment.resources import template_dir

TEMPLATE = template_dir("gpt-pretrain")
SONNETS = (template_dir("tiny-bigram") / "data" / "sonnets.txt").read_text()
POEMS = [p.strip() for p in re.split(r"\n\s*\n(?=[IVXLC]+\n)", SONNETS) if p.strip()]


def smoke_prepare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sources: list[Path] | None = None
) -> ModuleType:
    """prepare.py imported fresh with the smoke profile, a cache under `tmp_path` and `sources` as
    the data it trains on (SKYLAB_DATA, as Skylab passes experiment.toml's [data]); default: the
    test corpus files `tmp_path/train.txt` and `tmp_path/val.txt`."""
    monkeypatch.setenv("SKYLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SKYLAB_PROFILE", "smoke")
    return trains_on(monkeypatch, sources or [tmp_path / "train.txt", tmp_path / "val.txt"])


def trains_on(monkeypatch: pytest.MonkeyPatch, sources: list[Path]) -> ModuleType:
    """prepare.py imported fresh with `sources` as the data trials train on."""
    monkeypatch.setenv("SKYLAB_DATA", shlex.join(str(source) for source in sources))
    return load_module("prepare")


def load_module(name: str, directory: Path = TEMPLATE) -> ModuleType:
    """A fresh import of `directory/name.py`, so module-level settings see the current environment."""
    sys.path.insert(0, str(directory))
    try:
        for cached in ("prepare", "schedules", "runtime", name):
            sys.modules.pop(cached, None)
        spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(directory))


def write_parquet(path: Path, texts: list[str], column: str = "text") -> Path:
    pq.write_table(pa.table({column: texts}), path, row_group_size=max(1, len(texts) // 3))
    return path


class ShardServer:
    """A real HTTP server on 127.0.0.1 serving files with Range support and scripted failures."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_first: dict[str, int] = {}  # name -> bytes sent before the first response is cut
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = server.drop_first.pop(name, None)
                if cut is not None:
                    self.wfile.write(body[start : start + cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/shards"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @contextmanager
    def running(self) -> Iterator[ShardServer]:
        self.thread.start()
        try:
            yield self
        finally:
            self.httpd.shutdown()
            self.httpd.server_close()
