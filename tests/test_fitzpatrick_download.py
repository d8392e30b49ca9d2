"""The Fitzpatrick17k download step: a clear refusal without network, and resume/verify against
a tiny local HTTP server (127.0.0.1 only, stopped at teardown; every request has a timeout)."""

import functools
import hashlib
import http.server
import os
import subprocess
import sys
import threading

import pytest

from data_fixtures import jpeg_bytes, write_fitzpatrick
from pwprune.data import DatasetError, load_prepared, prepare
from pwprune.data.fitzpatrick17k import download_fitzpatrick17k

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
quiet = lambda *_: None  # noqa: E731


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/served on an ephemeral 127.0.0.1 port; yields (base_url, folder, hits)."""
    folder = tmp_path / "served"
    folder.mkdir()
    hits = []

    class Counting(_Handler):
        def do_GET(self):
            hits.append(self.path)
            return super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Counting, directory=str(folder)))
    httpd.timeout = 5
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", folder, hits
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(timeout=5)


def test_no_network_gives_a_clear_error(tmp_path):
    csv = tmp_path / "fitzpatrick17k.csv"
    csv.write_text(
        "md5hash,fitzpatrick_scale,fitzpatrick_centaur,label,nine_partition_label,"
        "three_partition_label,qc,url,url_alphanum\n"
        "0123456789abcdef0123456789abcdef,1,1,psoriasis,inflammatory,non-neoplastic,,"
        "http://127.0.0.1:9/x.jpg,x.jpg\n"
    )  # port 9 (discard): closed, connection refused
    with pytest.raises(DatasetError) as e:
        download_fitzpatrick17k(csv, tmp_path / "images", log=quiet, timeout=3)
    msg = str(e.value)
    assert "no network" in msg and "http://127.0.0.1:9/x.jpg" in msg and "resumable" in msg
    assert os.listdir(tmp_path / "images") == []


@pytest.mark.slow
def test_cli_reports_no_network(tmp_path):
    csv = tmp_path / "f.csv"
    csv.write_text("md5hash,fitzpatrick_scale,three_partition_label,url\nabc,1,benign,http://127.0.0.1:9/a.jpg\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pwprune.data.fitzpatrick17k",
            "download",
            "--csv",
            str(csv),
            "--images",
            str(tmp_path / "img"),
            "--timeout",
            "3",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "no network" in r.stderr


def test_download_resumes_and_verifies(tmp_path, server):
    base, served, hits = server
    raw = tmp_path / "raw"
    rows = write_fitzpatrick(raw, per_cell=1, with_images=False, url_base=base)
    for k, (h, *_rest) in enumerate(rows):  # the server holds the real bytes under the URL's name
        (served / f"{h}.jpg").write_bytes(jpeg_bytes(k))
    # one link is dead (404 from a live server) and one serves something that is not an image
    dead, junk = rows[0][0], rows[1][0]
    os.remove(served / f"{dead}.jpg")
    (served / f"{junk}.jpg").write_bytes(b"<html>not an image</html>")
    images = raw / "images"
    # an image already present and valid is skipped; a present but broken one is fetched again
    present, broken = rows[2][0], rows[3][0]
    (images / f"{present}.jpg").write_bytes(jpeg_bytes(2))
    (images / f"{broken}.jpg").write_bytes(b"\xff\xd8 half a jpeg")
    lines = []
    stats = download_fitzpatrick17k(raw / "fitzpatrick17k.csv", images, log=lines.append, timeout=5)
    n = len(rows)
    assert stats == {"downloaded": n - 3, "skipped": 1, "failed": 2, "md5_match": n - 3, "total": n}
    assert f"/{present}.jpg" not in hits and f"/{broken}.jpg" in hits
    assert not (images / f"{dead}.jpg").exists() and not (images / f"{junk}.jpg").exists()
    assert hashlib.md5((images / f"{broken}.jpg").read_bytes()).hexdigest() == broken
    assert not [f for f in os.listdir(images) if f.endswith(".part")]
    assert any("download done" in l for l in lines) and any(dead in l for l in lines)
    # second run: everything present is skipped, only the two bad links are tried again
    hits.clear()
    stats = download_fitzpatrick17k(raw / "fitzpatrick17k.csv", images, log=quiet, timeout=5)
    assert (
        stats["skipped"] == n - 2
        and stats["downloaded"] == 0
        and sorted(hits) == sorted([f"/{dead}.jpg", f"/{junk}.jpg"])
    )
    # preparation refuses while images are missing, and names the download step
    with pytest.raises(DatasetError, match="python -m pwprune.data.fitzpatrick17k download"):
        prepare({"kind": "fitzpatrick17k"}, raw, tmp_path / "out", log=quiet)
    # once the server has them, a resumed download completes the dataset and prepare works
    (served / f"{dead}.jpg").write_bytes(jpeg_bytes(0))
    (served / f"{junk}.jpg").write_bytes(jpeg_bytes(1))
    stats = download_fitzpatrick17k(raw / "fitzpatrick17k.csv", images, log=quiet, timeout=5)
    assert stats["downloaded"] == 2 and stats["failed"] == 0
    m = prepare({"kind": "fitzpatrick17k", "image_size": 8}, raw, tmp_path / "out", log=quiet)
    assert sum(m["sizes"].values()) == sum(1 for r in rows if r[1] > 0)
    assert load_prepared(tmp_path / "out").meta["group_names"] == ["1-2", "3-4", "5-6"]
