"""The `ndpatch` command line: the demo job, and errors as one line with exit status 2."""
from pathlib import Path

from ndpatch.cli import main


def test_demo_writes_a_mosaic_and_says_so(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--backend", "npy", "--workdir", str(tmp_path / "cache")]) == 0
    summary = capsys.readouterr().out
    assert f"wrote {out / 'mosaic.png'}: 12 windows" in summary and "backend=npy" in summary
    assert (out / "mosaic.png").stat().st_size > 0
    assert any(Path(tmp_path / "cache").rglob("*.npy"))


def test_bad_dataset_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["warmup", str(bad), "--workdir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ndpatch: error:") and "bad.json" in err and "malformed json" in err
    assert len(err.strip().splitlines()) == 1
