"""The `ndpatch` command line: exit statuses, --version, help, option checks, --config, logging, Ctrl-C."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import ndpatch
from ndpatch.cache.store import TEMP_MARK
from ndpatch.cli import build_parser, cog_codecs, leaf_parsers, main
from ndpatch.demo import make_dataset
from ndpatch.workers import default_workers

TINY = [{"shape": (40, 50, 3), "dtype": "uint8"}, {"shape": (30, 20), "dtype": "uint16"}]


@pytest.fixture
def dset(tmp_path):
    return make_dataset(tmp_path / "data", TINY)


def usage_error(argv, capsys) -> str:
    """Run ``main(argv)``, expect argparse's exit status 2, return what it printed on stderr."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def run_cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ndpatch", *args], capture_output=True, text=True,
                          timeout=120, **kwargs)


def test_demo_writes_a_mosaic_and_says_so(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--backend", "npy", "--workdir", str(tmp_path / "cache")]) == 0
    summary = capsys.readouterr().out
    assert f"wrote {out / 'mosaic.png'}: 12 windows" in summary and "backend=npy" in summary
    assert (out / "mosaic.png").stat().st_size > 0
    assert any(Path(tmp_path / "cache").rglob("*.npy"))


# ---------------------------------------------------------------- exit statuses

def test_runtime_errors_are_one_line_and_exit_1(tmp_path, dset, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["warmup", str(bad), "--workdir", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ndpatch: error:") and "bad.json" in err and "malformed json" in err
    assert len(err.strip().splitlines()) == 1

    assert main(["export", str(tmp_path / "missing.json"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ndpatch: error:") and "missing.json" in err and len(err.strip().splitlines()) == 1

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "mine.txt").write_text("keep")
    assert main(["export", dset.fpath, str(occupied), "--window", "16", "-q"]) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert (occupied / "mine.txt").read_text() == "keep"


def test_failed_work_exits_1(tmp_path, dset, capsys):
    os.unlink(Path(dset.fpath).parent / dset.imgs[2]["file_name"])
    assert main(["warmup", dset.fpath, "--backend", "npy", "--workers", "0", "--workdir", str(tmp_path / "c")]) == 1
    assert "1 failed" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["warmup"], "the following arguments are required: DATASET"),
    (["nope"], "invalid choice: 'nope'"),
    (["cache"], "the following arguments are required"),
    (["cache", "info", "--delete"], "unrecognized arguments: --delete"),
    (["export", "d.json", "out", "--format", "png"], "argument --format: invalid choice: 'png'"),
    (["export", "d.json", "out", "--overlap", "1.5"], "argument --overlap: 1.5 is not a number >= 0 and < 1"),
    (["export", "d.json", "out", "--window", "0x5"], "argument --window: window size must be N or HxW"),
    (["export", "d.json", "out", "--workers", "0"], "argument --workers: 0 is not an integer >= 1"),
    (["export", "d.json", "out", "--resume", "--overwrite"], "not allowed with argument"),
    (["export", "d.json", "out", "--shard"], "unrecognized arguments: --shard"),  # no abbreviations
    (["split", "d.json", "out", "--by", "pixel"], "argument --by: invalid choice: 'pixel'"),
    (["show", "d.json", "--gid", "1", "--out", "x.tif", "--cx", "5"], "--cx and --cy go together"),
    (["show", "d.json", "--gid", "1", "--out", "x.tif", "--scale", "0.5", "--gsd", "10"], "not allowed with"),
    (["warmup", "d.json", "--blocksize", "100"], "argument --blocksize: 100 is not a multiple of 16 >= 128"),
    (["warmup", "d.json", "--backend", "npy", "--compress", "LZW"], "apply to the cog and auto backends"),
])
def test_usage_errors_exit_2_before_any_work(argv, message, capsys):
    err = usage_error(argv, capsys)
    assert err.startswith("usage: ndpatch") and message in err


def test_exit_statuses_of_the_real_process(tmp_path):
    assert run_cli("warmup", str(tmp_path / "missing.json")).returncode == 1
    assert run_cli("warmup", "--compress", "FOO", "x.json").returncode == 2
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith(f"ndpatch {ndpatch.__version__} (GDAL ")


def test_version_names_ndpatch_and_gdal(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    from osgeo import gdal
    out = capsys.readouterr().out
    assert out.startswith(f"ndpatch {ndpatch.__version__} (GDAL {gdal.__version__}, kwcoco ")


# ---------------------------------------------------------------- help

def test_every_option_has_help_with_its_default_and_choices():
    for parser in leaf_parsers(build_parser()):
        path = parser.prog
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, (path, action.dest)
            described = parser.formatter_class(parser.prog)._get_help_string(action)
            assert ("(required)" if action.required else "default") in described, (path, action.option_strings)
            if action.choices:
                assert "{" + ",".join(map(str, action.choices)) + "}" in text, (path, action.dest)


def test_help_shows_defaults_and_the_same_worker_default(capsys):
    for argv in (["export", "--help"], ["warmup", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = " ".join(capsys.readouterr().out.split())
        assert f"(default: one per CPU, {default_workers()} here)" in text
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--shard-size SHARD_SIZE samples per webdataset/tfrecord shard (default: 256)" in text
    assert "--format {chips,kwcoco,webdataset,tfrecord} what to write (default: chips)" in text
    assert "--resume, --no-resume continue an interrupted export in OUT_DIR (default: False)" in text


def test_export_and_warmup_default_to_one_worker_per_cpu(dset, tmp_path, monkeypatch):
    import ndpatch.export
    import ndpatch.warmup
    from ndpatch.warmup import WarmupSummary
    calls = {}

    def fake_export(*args, **kwargs):
        calls["export"] = kwargs
        return {}

    def fake_warmup(*args, **kwargs):
        calls["warmup"] = kwargs
        return WarmupSummary("npy", "")

    monkeypatch.setattr(ndpatch.export, "export", fake_export)
    monkeypatch.setattr(ndpatch.export, "format_summary", lambda summary: "")
    monkeypatch.setattr(ndpatch.warmup, "warmup", fake_warmup)
    assert main(["export", dset.fpath, str(tmp_path / "out")]) == 0
    assert main(["warmup", dset.fpath]) == 0
    assert calls["export"]["workers"] == default_workers()
    assert calls["warmup"]["workers"] is None  # warmup's own default: ndpatch.workers.default_workers()


# ---------------------------------------------------------------- option values

def test_bad_compress_is_rejected_before_anything_is_written(dset, tmp_path, capsys):
    workdir = tmp_path / "cache"
    err = usage_error(["warmup", dset.fpath, "--workdir", str(workdir), "--compress", "FOO"], capsys)
    assert "argument --compress: invalid choice: 'FOO'" in err and "'DEFLATE'" in err
    assert "Warning" not in err and not workdir.exists()


def test_compress_is_case_insensitive_and_from_this_gdal(dset, tmp_path, capsys):
    assert {"NONE", "LZW", "DEFLATE"} <= set(cog_codecs())
    workdir = str(tmp_path / "cache")
    assert main(["warmup", dset.fpath, "--backend", "cog", "--workdir", workdir, "--workers", "0",
                 "--compress", "lzw", "-q"]) == 0
    sidecars = [json.loads(p.read_text()) for p in Path(workdir, "entries").glob("*.json")]
    assert [s["settings"]["compress"] for s in sidecars] == ["LZW", "LZW"]
    assert capsys.readouterr().err == ""  # -q: no progress bar


# ---------------------------------------------------------------- --config

def test_config_values_apply_and_the_command_line_overrides_them(dset, tmp_path):
    config = tmp_path / "export.yaml"
    config.write_text("format: kwcoco\nwindow: 16x8\nshard-size: 3\nseed: 5\nquiet: 1\n")
    out = tmp_path / "out"
    assert main(["export", dset.fpath, str(out), "--config", str(config), "--window", "20"]) == 0
    settings = json.loads((out / ".ndpatch-export" / "settings.json").read_text())
    assert (settings["format"], settings["window"], settings["seed"]) == ("kwcoco", [20, 20], 5)

    json_config = tmp_path / "export.json"
    json_config.write_text(json.dumps({"format": "webdataset", "shard_size": 2, "overwrite": True, "quiet": 1}))
    assert main(["export", dset.fpath, str(out), f"--config={json_config}", "--window", "16"]) == 0
    settings = json.loads((out / ".ndpatch-export" / "settings.json").read_text())
    assert (settings["format"], settings["block_size"]) == ("webdataset", 2)
    assert sorted(p.name for p in out.glob("shard-*.tar"))[:2] == ["shard-000000.tar", "shard-000001.tar"]


def test_config_flags_and_exclusive_options(dset, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", dset.fpath, str(out), "--window", "16", "-q"]) == 0
    config = tmp_path / "c.yaml"
    config.write_text("window: 16\nresume: true\n")
    assert main(["export", dset.fpath, str(out), "--config", str(config), "-q"]) == 0
    assert "blocks already done" in capsys.readouterr().out
    # the command line's --overwrite wins over the file's resume (one group: not a conflict)
    assert main(["export", dset.fpath, str(out), "--config", str(config), "--overwrite", "-q"]) == 0
    assert "already done" not in capsys.readouterr().out
    # ... and --no-resume switches the file's flag off: out is not empty, so the export refuses
    assert main(["export", dset.fpath, str(out), "--config", str(config), "--no-resume", "-q"]) == 1


def test_config_on_nested_and_other_subcommands(dset, tmp_path, capsys):
    workdir = str(tmp_path / "cache")
    config = tmp_path / "c.yaml"
    config.write_text(f"workdir: {workdir}\nbackend: npy\nworkers: 0\nquiet: 1\n")
    assert main(["warmup", dset.fpath, "--config", str(config)]) == 0
    (tmp_path / "v.yaml").write_text(f"workdir: {workdir}\ndelete: true\n")
    assert main(["cache", "verify", "--config", str(tmp_path / "v.yaml")]) == 0
    assert "2 of 2 entries ok" in capsys.readouterr().out


@pytest.mark.parametrize("text, message", [
    ("compress: FOO\n", "'compress': invalid choice 'FOO'"),
    ("blocksize: 100\n", "'blocksize': 100 is not a multiple of 16 >= 128"),
    ("colour: red\n", "unknown key 'colour'; ndpatch warmup takes"),
    ("dataset: other.json\n", "'dataset' is a positional argument"),
    ("workers: [1, 2]\n", "'workers' must be a single value"),
    ("- compress\n", "must hold a mapping of option names to values, not a list"),
    ("compress: [unclosed\n", "is not valid YAML"),
])
def test_bad_config_is_a_usage_error_before_any_work(text, message, dset, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    workdir = tmp_path / "cache"
    err = usage_error(["warmup", dset.fpath, "--workdir", str(workdir), "--config", str(config)], capsys)
    assert message in err and not workdir.exists()


def test_missing_config_file_is_a_usage_error(capsys):
    assert "argument --config: cannot read nothere.yaml" in usage_error(["cache", "info", "--config", "nothere.yaml"],
                                                                        capsys)


# ---------------------------------------------------------------- logging

def test_library_logger_is_silent_by_default_and_cli_levels(dset, tmp_path, capsys):
    import logging
    logger = logging.getLogger("ndpatch")
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    handlers = list(logger.handlers)
    workdir = str(tmp_path / "cache")
    assert main(["-v", "warmup", dset.fpath, "--backend", "npy", "--workers", "0", "--workdir", workdir]) == 0
    err = capsys.readouterr().err
    assert "ndpatch.cli: INFO: warmup with allow_vrt=False, backend='npy'" in err and "DEBUG" not in err
    assert main(["cache", "info", "--workdir", workdir, "-vv"]) == 0
    assert f"ndpatch.cli: DEBUG: ndpatch {ndpatch.__version__}" in capsys.readouterr().err
    assert main(["-q", "cache", "info", "--workdir", workdir]) == 0
    assert capsys.readouterr().err == ""
    assert logger.handlers == handlers  # main() leaves the logging set-up as it found it


# ---------------------------------------------------------------- Ctrl-C

def still_running(pids: list[int]) -> list[int]:
    """Which of ``pids`` are alive 10 s from now at the latest (zombies count as gone)."""
    processes = []
    for pid in pids:
        try:
            processes.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=10)
    return [p.pid for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def interrupt_when(proc: subprocess.Popen, started, group: bool) -> list[int]:
    """Send SIGINT (to the process, or its whole group as a terminal's Ctrl-C does) once ``started()``."""
    deadline = time.monotonic() + 120
    while not started():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    children = [child.pid for child in psutil.Process(proc.pid).children(recursive=True)]
    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    return children


def finished_parts(parts: Path) -> int:
    """Export blocks marked done (part files published, not the temp files of ones being written)."""
    return sum(TEMP_MARK not in p.name for p in parts.glob("*.json")) if parts.is_dir() else 0


@pytest.mark.parametrize("group", [False, True], ids=["process", "process group"])
def test_ctrl_c_during_export_exits_130_with_the_resume_hint(group, tmp_path):
    dset = make_dataset(tmp_path / "data", [{"shape": (1024, 1024, 3), "dtype": "uint8"}] * 4)
    out = tmp_path / "out"
    parts = out / ".ndpatch-export" / "parts"
    args = ["-m", "ndpatch", "export", dset.fpath, str(out), "--window", "128", "--workers", "2", "-q"]
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    workers = interrupt_when(proc, lambda: finished_parts(parts) > 0, group)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["ndpatch: interrupted; rerun with --resume to continue"]
    assert workers and still_running(workers) == []
    done = finished_parts(parts)
    assert 0 < done < 256 // 16  # 4 images of 8 x 8 windows, in blocks of 16 chips
    assert main(["export", dset.fpath, str(out), "--window", "128", "--resume", "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chips"] == 256 and summary["resumed_blocks"] >= done


def test_ctrl_c_during_warmup_exits_130_and_stops_the_workers(tmp_path):
    dset = make_dataset(tmp_path / "data", [{"shape": (1024, 1024, 3), "dtype": "uint8"}] * 6)
    entries = tmp_path / "cache" / "entries"
    proc = subprocess.Popen([sys.executable, "-m", "ndpatch", "warmup", dset.fpath, "--backend", "cog",
                             "--workers", "2", "--workdir", str(tmp_path / "cache"), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    workers = interrupt_when(proc, lambda: entries.is_dir() and any(entries.glob("*.json")), group=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip().splitlines() == ["ndpatch: interrupted"]
    assert workers and still_running(workers) == []
    workdir = ["--workdir", str(tmp_path / "cache"), "-q"]
    assert main(["warmup", dset.fpath, "--backend", "cog", "--workers", "2", *workdir]) == 0  # the rest
    assert main(["cache", "verify", *workdir]) == 0  # nothing half-written is left or served


def test_ctrl_c_of_a_command_without_resume_says_interrupted(tmp_path, monkeypatch, capsys):
    import ndpatch.cache
    monkeypatch.setattr(ndpatch.cache.CacheStore, "info", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs as a background job
    assert main(["cache", "info", "--workdir", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "ndpatch: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_cli_doc_lists_the_conventions():
    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for needle in ("130", "--config", "-v", "--version", "cache verify"):
        assert needle in text
    assert re.search(r"\b2\b.*usage", text)
