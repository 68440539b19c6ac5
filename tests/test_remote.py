"""Sources in object storage (a loopback moto S3 server) and on a web server (a ranged http.server).

One S3 server per module (authentication on: a wrong key is refused as on AWS);
GDAL talks to it through the environment (``AWS_S3_ENDPOINT``, ``AWS_HTTPS=NO``,
``AWS_VIRTUAL_HOSTING=FALSE``, the key). Pixels are compared bit for bit with
GDAL's own read of the local file that was uploaded.
"""
import json
import os
from pathlib import Path

import kwcoco
import numpy as np
import pytest
from osgeo import gdal

import ndpatch
from loopback import HERMETIC_ENV, RangeHTTPServer, S3Server
from ndpatch import remote
from ndpatch.demo import random_pixels, write_raster
from ndpatch.errors import SourceReadError
from ndpatch.record import ImageRecords
from ndpatch.warmup import warmup

BUCKET = "ndpatch-test"
BACKENDS = [None, "npy", "cog", "auto"]
WINDOW = {"space_slice": (slice(-5, 40), slice(20, 75))}  # off the top edge


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """GDAL's requests stay on 127.0.0.1 (no proxy, no EC2 credential probe) in every test."""
    for name, value in HERMETIC_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server, pytest.MonkeyPatch.context() as patch:
        for name, value in server.gdal_env().items():
            patch.setenv(name, value)
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    gdal.VSICurlClearCache()


def upload(s3, tmp_path, key: str, pixels: np.ndarray, **raster) -> str:
    local = write_raster(tmp_path / Path(key).name, pixels, **raster)
    s3.client().upload_file(local, BUCKET, key)
    return local


def remote_dataset(tmp_path, names: list[str], sizes: list[tuple]) -> kwcoco.CocoDataset:
    dset = kwcoco.CocoDataset()
    dset.fpath = str(tmp_path / "remote.kwcoco.json")
    for name, (height, width) in zip(names, sizes):
        dset.add_image(file_name=name, width=width, height=height)
    dset.dump(dset.fpath)
    return dset


def gdal_window(path: str, rows: slice, cols: slice) -> np.ndarray:
    full = gdal.Open(path).ReadAsArray()
    full = np.moveaxis(full[None] if full.ndim == 2 else full, 0, -1)
    out = np.zeros((rows.stop - rows.start, cols.stop - cols.start, full.shape[2]), full.dtype)
    r0, c0 = max(rows.start, 0), max(cols.start, 0)
    r1, c1 = min(rows.stop, full.shape[0]), min(cols.stop, full.shape[1])
    out[r0 - rows.start:r1 - rows.start, c0 - cols.start:c1 - cols.start] = full[r0:r1, c0:c1]
    return out


@pytest.fixture(scope="module")
def scenes(s3, tmp_path_factory):
    """Two objects: a striped uint16 GeoTIFF and a tiled 3-band COG; ``(dataset, local copies)``."""
    tmp = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(3)
    striped = upload(s3, tmp, "scenes/striped.tif", random_pixels((60, 90), "uint16", rng))
    tiled = upload(s3, tmp, "scenes/tiled.tif", random_pixels((140, 130, 3), "uint8", rng), driver="COG",
                   options=["BLOCKSIZE=64"])
    dset = remote_dataset(tmp, [f"s3://{BUCKET}/scenes/striped.tif", f"/vsis3/{BUCKET}/scenes/tiled.tif"],
                          [(60, 90), (140, 130)])
    return dset, {1: striped, 2: tiled}


def files_written(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("backend", BACKENDS)
def test_s3_sources_read_bit_exact_on_every_backend(scenes, backend, tmp_path):
    dset, local = scenes
    sampler = ndpatch.CocoSampler(dset, backend=backend, workdir=str(tmp_path / "cache"))
    for gid in (1, 2):
        sample = sampler.load_sample({"gid": gid, **WINDOW})
        assert np.array_equal(sample["im"], gdal_window(local[gid], *WINDOW["space_slice"]))
    if backend is not None:
        for gid in (1, 2):
            sidecar = sampler.entry(gid).meta["sidecar"]
            assert not sidecar["in_place"]  # copied into the local cache, never read over the network
            assert sidecar["source"]["path"].startswith(f"s3://{BUCKET}/scenes/")
            assert sidecar["source"]["version"].startswith("etag:")


def test_a_batch_of_remote_windows_matches_gdal(scenes, tmp_path):
    dset, local = scenes
    sampler = ndpatch.CocoSampler(dset, backend="cog", workdir=str(tmp_path / "cache"))
    targets = [{"gid": 2, "space_slice": (slice(r, r + 32), slice(c, c + 32))} for r, c in [(0, 0), (100, 90), (-8, 120)]]
    batch = sampler.load_batch(targets)
    for k, target in enumerate(targets):
        assert np.array_equal(batch["im"][k], gdal_window(local[2], *target["space_slice"]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_overwritten_object_serves_the_new_pixels(s3, tmp_path, backend):
    key = f"rewrite/{backend}.tif"
    rng = np.random.default_rng(11)
    (tmp_path / "v1").mkdir()
    first = upload(s3, tmp_path / "v1", key, random_pixels((30, 40), "uint8", rng))
    dset = remote_dataset(tmp_path, [f"s3://{BUCKET}/{key}"], [(30, 40)])
    window = {"gid": 1, "space_slice": (slice(0, 30), slice(0, 40))}
    clock = [0.0]
    sampler = ndpatch.CocoSampler(dset, backend=backend, workdir=str(tmp_path / "cache"))
    sampler.records = ImageRecords(sampler.index, sampler.backend, clock=lambda: clock[0])
    assert np.array_equal(sampler.load_sample(window)["im"], gdal_window(first, *window["space_slice"]))
    (tmp_path / "v2").mkdir()
    second = upload(s3, tmp_path / "v2", key, random_pixels((30, 40), "uint8", rng))
    fresh = ndpatch.CocoSampler(dset, backend=backend, workdir=str(tmp_path / "cache"))
    assert np.array_equal(fresh.load_sample(window)["im"], gdal_window(second, *window["space_slice"]))
    clock[0] += remote.RECHECK_SECONDS  # the live sampler asks the server again after the re-check interval
    assert np.array_equal(sampler.load_sample(window)["im"], gdal_window(second, *window["space_slice"]))


@pytest.mark.parametrize("backend", [None, "npy"])
def test_a_live_sampler_asks_the_server_at_most_once_per_interval(scenes, tmp_path, monkeypatch, backend):
    dset, _ = scenes
    asked = []
    fetch = remote._fetch
    monkeypatch.setattr(remote, "_fetch", lambda path, what: asked.append(path) or fetch(path, what))
    clock = [0.0]
    sampler = ndpatch.CocoSampler(dset, backend=backend, workdir=str(tmp_path / "cache"))
    sampler.records = ImageRecords(sampler.index, sampler.backend, clock=lambda: clock[0])
    sampler.load_sample({"gid": 1, **WINDOW})
    assert len(asked) == 1  # one request resolves the image (its identity serves the stat and the key)
    for step in range(20):  # 20 s of sampling, one sample a second: re-stats, no request
        clock[0] += 1.0
        sampler.load_sample({"gid": 1, **WINDOW})
    assert len(asked) == 1
    clock[0] += remote.RECHECK_SECONDS
    sampler.load_sample({"gid": 1, **WINDOW})
    assert len(asked) == 2


def test_a_missing_object_names_the_image_and_the_uri(s3, tmp_path):
    dset = remote_dataset(tmp_path, [f"s3://{BUCKET}/nowhere/missing.tif"], [(10, 10)])
    for backend in (None, "npy"):
        with pytest.raises(SourceReadError) as err:
            ndpatch.CocoSampler(dset, backend=backend, workdir=str(tmp_path / "cache")).load_sample(
                {"gid": 1, "space_slice": (slice(0, 4), slice(0, 4))})
        assert f"image 1 (s3://{BUCKET}/nowhere/missing.tif)" in str(err.value)
        assert "no such object" in str(err.value)


def test_a_missing_bucket_says_so(s3, tmp_path):
    dset = remote_dataset(tmp_path, ["s3://no-such-bucket-here/a.tif"], [(10, 10)])
    with pytest.raises(SourceReadError, match=r"image 1 \(s3://no-such-bucket-here/a.tif\).*bucket does not exist"):
        ndpatch.CocoSampler(dset).load_sample({"gid": 1, "space_slice": (slice(0, 4), slice(0, 4))})


def test_a_wrong_key_is_a_clear_error_that_shows_no_credential(s3, scenes, tmp_path, monkeypatch):
    dset, _ = scenes
    secret = s3.keys["AWS_SECRET_ACCESS_KEY"]
    workdir = tmp_path / "cache"
    ndpatch.CocoSampler(dset, backend="npy", workdir=str(workdir)).load_sample({"gid": 1, **WINDOW})
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-" + secret[6:])
    gdal.VSICurlClearCache()
    messages = []
    for backend in (None, "npy"):
        with pytest.raises(SourceReadError) as err:
            ndpatch.CocoSampler(dset, backend=backend, workdir=str(workdir)).load_sample({"gid": 2, **WINDOW})
        text = str(err.value)
        assert f"image 2 (s3://{BUCKET}/scenes/tiled.tif)" in text
        assert "signature does not match" in text and "check the credentials" in text
        messages.append(text)
    summary = warmup(dset, backend="npy", workdir=str(workdir), workers=0, progress=False)
    assert sorted(summary.failed) == [1, 2]
    messages += [str(summary), *summary.failed.values()]
    monkeypatch.undo()
    for value in (secret, "wrong-" + secret[6:], s3.keys["AWS_ACCESS_KEY_ID"]):
        assert all(value not in text for text in messages)
        for path in files_written(workdir):
            assert value not in path.name and value.encode() not in path.read_bytes()


def test_scrub_blanks_secrets_from_the_environment_and_the_credentials_file(tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = AKIAFROMTHEFILE0001\n"
                           "aws_secret_access_key = file-secret-value-123\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-value")
    text = remote.scrub("AKIAFROMTHEFILE0001 file-secret-value-123 session-token-value kept")
    assert text == "*** *** *** kept"
    err = SourceReadError("image 1 (s3://b/a.tif): refused for file-secret-value-123")
    assert str(err) == "image 1 (s3://b/a.tif): refused for ***"


def test_a_timeout_is_a_clear_error(tmp_path, monkeypatch):
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    port = listener.getsockname()[1]
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "1")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    try:
        dset = remote_dataset(tmp_path, [f"http://127.0.0.1:{port}/slow.tif"], [(10, 10)])
        with pytest.raises(SourceReadError, match=rf"image 1 \(http://127.0.0.1:{port}/slow.tif\).*timed out"):
            ndpatch.CocoSampler(dset).load_sample({"gid": 1, "space_slice": (slice(0, 4), slice(0, 4))})
    finally:
        listener.close()


@pytest.mark.parametrize("backend", [None, "npy", "cog"])
def test_an_http_source_reads_through_vsicurl_with_range_requests(tmp_path, backend):
    rng = np.random.default_rng(5)
    pixels = random_pixels((256, 256, 2), "int16", rng)
    (tmp_path / "www").mkdir()
    local = write_raster(tmp_path / "www" / "cog.tif", pixels, driver="COG", options=["BLOCKSIZE=64", "COMPRESS=DEFLATE"])
    with RangeHTTPServer(tmp_path / "www") as server:
        dset = remote_dataset(tmp_path, [server.url("cog.tif")], [(256, 256)])
        sampler = ndpatch.CocoSampler(dset, backend=backend, workdir=str(tmp_path / "cache"))
        window = (slice(70, 100), slice(130, 160))
        assert np.array_equal(sampler.load_sample({"gid": 1, "space_slice": window})["im"],
                              gdal_window(local, *window))
        if backend is None:  # a window fetches the tiles under it, not the whole object
            assert server.bytes_sent < os.path.getsize(local) / 2
        assert sampler.records.get(1).files[0].source.path == "/vsicurl/" + server.url("cog.tif")


def test_uri_helpers():
    assert remote.gdal_path("gs://b/k.tif") == "/vsigs/b/k.tif"
    assert remote.gdal_path("az://container/k.tif") == "/vsiaz/container/k.tif"
    assert remote.gdal_path("HTTPS://h/k.tif") == "/vsicurl/HTTPS://h/k.tif"
    assert remote.gdal_path("file.tif") == "file.tif"
    assert remote.display("/vsigs/b/k.tif") == "gs://b/k.tif"
    assert not remote.is_remote("/vsizip//data/a.zip/b.tif") and remote.is_remote("/vsicurl/http://h/a")
    img = {"id": 4, "file_name": "s3://bucket/x/y.tif"}
    from ndpatch.dataset import image_files
    assert image_files(img, "/bundle")[0].source.path == "/vsis3/bucket/x/y.tif"
    sidecars = json.dumps({"path": remote.display("/vsicurl/https://u:p@h/a.tif?sig=1")})
    assert "u:p" not in sidecars and "sig=1" not in sidecars


def test_a_url_password_and_query_values_show_in_no_repr_error_or_cache_file(tmp_path):
    """A URL that carries its credentials (``user:password@``, a signed query) is shown without them."""
    (tmp_path / "www").mkdir()
    local = write_raster(tmp_path / "www" / "a.tif", random_pixels((20, 30), "uint8", np.random.default_rng(2)))
    secrets = ("hunter2pw", "SAS-TOKEN-VALUE")
    with RangeHTTPServer(tmp_path / "www") as server:
        signed = server.url("{}").replace("http://", "http://me:hunter2pw@") + "?sig=SAS-TOKEN-VALUE"
        dset = remote_dataset(tmp_path, [signed.format("a.tif"), signed.format("gone.tif")], [(20, 30), (20, 30)])
        sampler = ndpatch.CocoSampler(dset, backend="npy", workdir=str(tmp_path / "cache"))
        window = (slice(0, 20), slice(0, 30))
        assert np.array_equal(sampler.load_sample({"gid": 1, "space_slice": window})["im"], gdal_window(local, *window))
        with pytest.raises(SourceReadError) as err:
            sampler.load_sample({"gid": 2, "space_slice": window})
        record = sampler.records.get(1)
        texts = [str(err.value), repr(record), repr(sampler.entry(1))]
    assert "image 2 (http://127.0.0.1:" in texts[0] and "gone.tif?sig=***): no such object" in texts[0]
    for secret in secrets:
        assert all(secret not in text for text in texts), texts
        for path in files_written(tmp_path / "cache"):
            assert secret not in path.name and secret.encode() not in path.read_bytes()


def test_an_object_uploaded_after_its_folder_was_listed_is_found(s3, tmp_path):
    rng = np.random.default_rng(21)
    first = upload(s3, tmp_path, "late/a.tif", random_pixels((16, 24), "uint8", rng))
    dset = remote_dataset(tmp_path, [f"s3://{BUCKET}/late/a.tif", f"s3://{BUCKET}/late/b.tif"], [(16, 24)] * 2)
    window = (slice(0, 16), slice(0, 24))
    sampler = ndpatch.CocoSampler(dset)                      # opening a.tif lists late/ (GDAL's sidecar search)
    assert np.array_equal(sampler.load_sample({"gid": 1, "space_slice": window})["im"], gdal_window(first, *window))
    with pytest.raises(SourceReadError, match="no such object"):
        sampler.load_sample({"gid": 2, "space_slice": window})
    (tmp_path / "b").mkdir()
    second = upload(s3, tmp_path / "b", "late/b.tif", random_pixels((16, 24), "uint8", rng))
    fresh = ndpatch.CocoSampler(dset, backend="npy", workdir=str(tmp_path / "cache"))
    assert np.array_equal(fresh.load_sample({"gid": 2, "space_slice": window})["im"], gdal_window(second, *window))
