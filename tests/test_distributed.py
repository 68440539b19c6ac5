"""Two gloo ranks on loopback: disjoint shards whose union is the epoch, exact resume, balanced shards."""
import datetime
import json
import multiprocessing
import socket

import pytest
import torch.distributed as dist
from torch.utils.data import DataLoader

import ndpatch
from ndpatch.demo import make_dataset
from ndpatch.torch import BalancedSampler, PatchDataset, ShardedSampler, collate

WORLD = 2
N_TARGETS = 11  # odd: the sharded epoch is padded by one repeated sample


def _targets():
    return [{"gid": 1 + i % 2, "space_slice": (slice(2 * i - 6, 2 * i + 6), slice(-4, 12))}
            for i in range(N_TARGETS)]


def _epoch_indices(loader):
    return [i for batch in loader for i in batch["index"].tolist()]


def _rank_main(rank: int, port: int, dataset_path: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        dataset = PatchDataset(ndpatch.CocoSampler(dataset_path), _targets(), task="detection")
        sampler = ShardedSampler(dataset, seed=7)  # rank and world size from torch.distributed
        loader = DataLoader(dataset, batch_size=2, sampler=sampler, collate_fn=collate)
        epochs = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            epochs.append(_epoch_indices(loader))

        sampler.set_epoch(2)
        batches = iter(loader)
        head = [i for _, batch in zip(range(2), batches) for i in batch["index"].tolist()]
        state = sampler.state_dict()
        resumed_sampler = ShardedSampler(dataset, seed=7)
        resumed_sampler.load_state_dict(json.loads(json.dumps(state)))
        resumed_sampler.set_epoch(2)
        resumed = _epoch_indices(DataLoader(dataset, batch_size=2, sampler=resumed_sampler,
                                            collate_fn=collate))
        uninterrupted = ShardedSampler(dataset, seed=7)
        uninterrupted.set_epoch(2)

        balanced = list(BalancedSampler([i % 3 for i in range(N_TARGETS)], num_samples=30, seed=1))
        result = {"epochs": epochs, "head": head, "resumed": resumed, "epoch2": list(uninterrupted),
                  "balanced": balanced}
        gathered = [None] * WORLD
        dist.all_gather_object(gathered, result)
        if rank == 0:
            with open(f"{out_dir}/result.json", "w") as file:
                json.dump(gathered, file)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(180)
def test_two_gloo_ranks_split_epochs_and_resume(tmp_path):
    dset = make_dataset(tmp_path / "data", [{"shape": (40, 30, 3), "dtype": "uint8"}] * 2, seed=2)
    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_rank_main, args=(rank, port, dset.fpath, str(tmp_path)))
             for rank in range(WORLD)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=150)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    assert [proc.exitcode for proc in procs] == [0, 0]
    ranks = json.loads((tmp_path / "result.json").read_text())

    for epoch in range(2):
        shards = [ranks[r]["epochs"][epoch] for r in range(WORLD)]
        assert len(shards[0]) == len(shards[1]) == 6
        padded = [i for pair in zip(*shards) for i in pair]  # the epoch's order, rank by rank
        assert sorted(set(padded)) == list(range(N_TARGETS))
        assert padded[N_TARGETS:] == padded[:1]  # the one padding sample repeats the epoch's first
        assert not set(padded[:N_TARGETS][0::2]) & set(padded[:N_TARGETS][1::2])  # disjoint shards
    assert ranks[0]["epochs"][0] != ranks[0]["epochs"][1]  # set_epoch reshuffles

    for r in range(WORLD):
        assert ranks[r]["head"] + ranks[r]["resumed"] == ranks[r]["epoch2"]
        assert len(ranks[r]["head"]) == 4

    balanced = [ranks[r]["balanced"] for r in range(WORLD)]
    assert len(balanced[0]) == len(balanced[1]) == 15
    whole = list(BalancedSampler([i % 3 for i in range(N_TARGETS)], num_samples=30, num_replicas=WORLD,
                                 rank=0, seed=1).epoch_indices())
    assert [i for pair in zip(*balanced) for i in pair] == whole
