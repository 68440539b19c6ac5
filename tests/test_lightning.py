"""ndpatch.lightning.PatchDataModule: split loaders, sharding across ranks, mid-epoch resume, the example."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pl = pytest.importorskip("lightning.pytorch")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from ndpatch.demo import make_dataset  # noqa: E402
from ndpatch.errors import NdpatchError  # noqa: E402
from ndpatch.lightning import PatchDataModule, split_files  # noqa: E402
from ndpatch.splits import split_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def splits(tmp_path):
    """train (4 images of 64x64: 16 grid windows of 32) and val (2 images) files, as `ndpatch split` writes."""
    dset = make_dataset(tmp_path / "data", [{"shape": (64, 64, 3), "dtype": "uint8"}] * 6)
    split_dataset(dset, tmp_path / "splits", {"train": 4 / 6, "val": 2 / 6, "test": 0.0})
    return tmp_path / "splits"


class Recorder(pl.LightningModule):
    """Records the dataset indices of every training batch (rank-local); learns nothing useful."""

    def __init__(self, record: Path | None = None):
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.seen: list[list[int]] = []
        self.record = record

    def training_step(self, batch, batch_idx):
        self.seen.append(batch["index"].tolist())
        if self.record is not None:
            with open(f"{self.record}.{self.global_rank}", "a") as f:
                f.write(" ".join(map(str, batch["index"].tolist())) + "\n")
        return self.layer(batch["im"].float().mean().reshape(1, 1)).sum()

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def trainer(tmp_path, **kwargs) -> "pl.Trainer":
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(tmp_path),
                      **{"enable_checkpointing": False, **kwargs})


def grid_module(splits, **kwargs) -> PatchDataModule:
    return PatchDataModule(splits, window_dims=(32, 32), batch_size=4, train_windows="grid", backend=None,
                           **kwargs)


def test_split_folder_gives_train_val_and_no_test_loader(splits):
    assert sorted(split_files(splits)) == ["test", "train", "val"]
    data = grid_module(splits, task="detection", mean=127.5, std=64.0)
    data.setup("fit")
    train = data.train_dataloader()
    assert len(data.datasets["train"]) == 16 and len(train) == 4
    batch = next(iter(train))
    assert batch["im"].shape == (4, 3, 32, 32) and batch["im"].dtype == torch.float32   # dataset options passed
    assert len(batch["targets"]) == 4
    val = data.val_dataloader()
    assert len(data.datasets["val"]) == 8
    assert sorted(i for b in val for i in b["index"].tolist()) == list(range(8))
    assert sorted(i for b in val for i in b["index"].tolist()) == list(range(8))   # again, from the start
    assert data.test_dataloader() == []                 # the split has no image


def test_train_options_apply_to_the_train_split_only(splits):
    data = grid_module(splits, dtype=torch.float32, mean=100.0, std=1.0, train_options={"mean": 0.0, "std": 2.0})
    data.setup("fit")
    assert data.dataset_options["train"] == {"dtype": torch.float32, "mean": 0.0, "std": 2.0}
    assert data.dataset_options["val"] == data.dataset_options["test"] == {"dtype": torch.float32, "mean": 100.0,
                                                                              "std": 1.0}
    for split, loader, mean, std in (("train", data.train_dataloader(), 0.0, 2.0),
                                     ("val", data.val_dataloader(), 100.0, 1.0)):
        dataset, batch = data.datasets[split], next(iter(loader))
        pixels = torch.stack([torch.as_tensor(dataset.sampler.load_sample(dataset.targets[i])["im"])
                              for i in batch["index"].tolist()]).permute(0, 3, 1, 2).float()
        assert torch.equal(batch["im"], (pixels - mean) / std)


class Seer(Recorder):
    """Records the pixels each training and validation step is given."""

    def __init__(self):
        super().__init__()
        self.pixels = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        self.pixels["train"].append(batch["im"].clone())
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.pixels["val"].append(batch["im"].clone())


def test_the_device_transform_changes_training_batches_only(splits, tmp_path):
    def inverted(batch):
        return {**batch, "im": 255 - batch["im"]}

    plain, seen, data = Seer(), Seer(), grid_module(splits, train_device_transform=inverted)
    trainer(tmp_path / "a", max_steps=2, limit_val_batches=1, val_check_interval=2).fit(
        plain, datamodule=grid_module(splits))
    trainer(tmp_path / "b", max_steps=2, limit_val_batches=1, val_check_interval=2).fit(seen, datamodule=data)
    assert len(seen.pixels["train"]) == 2 and len(seen.pixels["val"]) == 1
    assert all(torch.equal(a, 255 - b) for a, b in zip(seen.pixels["train"], plain.pixels["train"]))
    assert torch.equal(seen.pixels["val"][0], plain.pixels["val"][0])
    assert data._train_loader.state_dict()["position"] == 8   # both batches counted


def test_positives_are_the_same_on_every_rank_and_bad_inputs_say_so(splits, tmp_path):
    one = PatchDataModule(splits, window_dims=(16, 16), batch_size=2, backend=None, seed=3)
    two = PatchDataModule(splits, window_dims=(16, 16), batch_size=2, backend=None, seed=3)
    one.setup("fit"), two.setup("fit")
    assert one.datasets["train"].targets == two.datasets["train"].targets
    assert len(one.datasets["train"]) == 2 * one.datasets["train"].sampler.dset.n_annots  # ratio 1 negatives
    with pytest.raises(NdpatchError, match="holds none of train.kwcoco.json"):
        PatchDataModule(tmp_path, window_dims=(8, 8))
    with pytest.raises(NdpatchError, match="unknown split names"):
        PatchDataModule({"training": "x.json"}, window_dims=(8, 8))
    with pytest.raises(NdpatchError, match="fitting needs a train split"):
        PatchDataModule({"val": splits / "val.kwcoco.json"}, window_dims=(8, 8), backend=None).setup("fit")


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")   # the resumed run's own
def test_training_reshuffles_each_epoch_and_resumes_mid_epoch_exactly(splits, tmp_path):
    whole = Recorder()
    trainer(tmp_path / "a", max_steps=10).fit(whole, datamodule=grid_module(splits))
    epochs = [sorted(i for b in whole.seen[k:k + 4] for i in b) for k in (0, 4)]
    assert epochs == [list(range(16))] * 2 and whole.seen[0:4] != whole.seen[4:8]

    checkpoints = tmp_path / "ckpt"
    first = Recorder()
    saver = pl.callbacks.ModelCheckpoint(dirpath=checkpoints, every_n_train_steps=6, save_top_k=-1)
    trainer(tmp_path / "b", max_steps=6, enable_checkpointing=True, callbacks=[saver]).fit(
        first, datamodule=grid_module(splits))
    (ckpt,) = checkpoints.glob("*.ckpt")     # after step 6: epoch 1, two of its four batches done
    rest = Recorder()
    saver = pl.callbacks.ModelCheckpoint(dirpath=checkpoints, every_n_train_steps=6, save_top_k=-1)
    trainer(tmp_path / "c", max_steps=10, enable_checkpointing=True, callbacks=[saver]).fit(
        rest, datamodule=grid_module(splits), ckpt_path=str(ckpt))
    assert first.seen + rest.seen == whole.seen


def test_balanced_train_sampler(splits, tmp_path):
    model = Recorder()
    trainer(tmp_path, max_steps=3).fit(model, datamodule=grid_module(splits, balance=True))
    assert len(model.seen) == 3 and all(len(b) == 4 for b in model.seen)


DDP_SCRIPT = """
import sys
import lightning.pytorch as pl
sys.path.insert(0, {tests!r})
from test_lightning import Recorder, grid_module

if __name__ == "__main__":
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(Recorder({record!r}), datamodule=grid_module({splits!r}))
"""


def test_two_processes_split_each_epoch_between_them(splits, tmp_path):
    record = tmp_path / "seen"
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(tests=str(ROOT / "tests"), record=str(record),
                                                        splits=str(splits))))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [[int(i) for line in Path(f"{record}.{r}").read_text().split("\n") for i in line.split()]
             for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 8                    # 16 windows, 2 batches of 4 per rank
    assert sorted(ranks[0] + ranks[1]) == list(range(16))        # disjoint shards of one epoch


def test_the_example_trains_a_few_steps_on_cpu(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "train_lightning.py"), "--max-steps", "3",
                           "--batch-size", "4", "--workdir", str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "NDPATCH_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained 3 steps, last train loss" in done.stdout
    assert any((tmp_path / "cache").rglob("*.npy"))              # prepare_data filled the npy cache


def test_sample_hooks_reach_the_train_split_only(splits):
    def zeroed(sample):
        return {**sample, "im": np.zeros_like(sample["im"])}
    data = grid_module(splits, batch_transform=lambda batch: {**batch, "marked": True},
                       train_options={"transform": zeroed})
    data.setup("fit")
    train, val = next(iter(data.train_dataloader())), next(iter(data.val_dataloader()))
    assert train["marked"] and val["marked"]
    assert (train["im"] == 0).all() and (val["im"] != 0).any()
