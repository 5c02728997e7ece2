"""Runs trained side by side in worker processes end exactly like runs trained one after another."""

from __future__ import annotations

import torch
from train_fakes import SquaresPairs, checkpoint_state, smoke_cfg

from contextclip.data.pairs import PairDataset
from contextclip.multirun import fit_runs, prefill_augmentations


def test_parallel_runs_match_sequential_runs(tmp_path):
    cfg = smoke_cfg(epochs=2, batch_size=16)
    train, val = SquaresPairs(48), SquaresPairs(16, offset=48)
    jobs = lambda root: [(m, s, root / f"{m}-seed{s}") for m in ("clip", "contextclip") for s in (0, 1)]  # noqa: E731
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the 2 workers below: the same summation order, the same bits
    try:
        seq = fit_runs(cfg, jobs(tmp_path / "seq"), train, val, workers=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    if threads < 2:
        torch.set_num_threads(2)  # 2 // 2 workers = 1 thread each
    try:
        par = fit_runs(cfg, jobs(tmp_path / "par"), train, val, workers=2, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert [(s["method"], s["seed"]) for s in par] == [(s["method"], s["seed"]) for s in seq]
    for (m, s, a), (_, _, b) in zip(jobs(tmp_path / "seq"), jobs(tmp_path / "par")):
        wa, wb = checkpoint_state(a), checkpoint_state(b)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), (m, s)
    assert [s["final_val_loss"] for s in par] == [s["final_val_loss"] for s in seq]


def test_prefill_draws_each_augmented_item_once():
    images = torch.randint(0, 255, (12, 8, 8, 3), dtype=torch.uint8).numpy()

    class Source:
        def __init__(self):
            self.images, self.captions, self.mild, self.calls = images, [["a", "b"]] * 12, [False] * 12, 0

        def __len__(self):
            return 12

        def image(self, i):
            self.calls += 1
            return self.images[i]

    src = Source()
    ds = PairDataset(src, range(12), train=True, augment=True, seed=0)
    prefill_augmentations(ds, epochs=2)
    assert src.calls == 24
    ds.set_epoch(1)
    first = [ds[k] for k in range(12)]
    again = [ds[k] for k in range(12)]
    assert src.calls == 24  # served from the kept items
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(first, again))
    fresh = PairDataset(Source(), range(12), train=True, augment=True, seed=0)
    fresh.set_epoch(1)
    assert all(torch.equal(fresh[k][0], first[k][0]) for k in range(12))  # the same items as drawn directly
    forked_src = Source()
    forked = PairDataset(forked_src, range(12), train=True, augment=True, seed=0)
    prefill_augmentations(forked, epochs=2, workers=2)  # drawn in two processes, kept here
    forked.set_epoch(1)
    assert all(torch.equal(forked[k][0], first[k][0]) and forked[k][1] == first[k][1] for k in range(12))
    assert forked_src.calls == 0


def test_prefill_in_workers_handles_thousands_of_items():
    """Each epoch comes back in one piece (thousands of tensors would each need a file descriptor)."""
    n = 3000
    images = torch.randint(0, 255, (n, 4, 4, 3), dtype=torch.uint8).numpy()

    class Source:
        mild = [False] * n
        captions = [["x"]] * n

        def __len__(self):
            return n

        def image(self, i):
            return images[i]

    ds = PairDataset(Source(), range(n), train=True, augment=False, seed=0)
    prefill_augmentations(ds, epochs=2, workers=2)
    assert len(ds._memo) == 2 * n
    assert torch.equal(ds[5][0], torch.from_numpy(images[5]).permute(2, 0, 1))


def test_a_step_on_cached_features_of_both_towers_reads_captions_alone():
    """``caption(k)`` is the caption ``ds[k]`` draws (several per image, every epoch); with both towers'
    features cached the loader yields those captions and never reads an image."""
    from contextclip.train import FrozenCaches
    from contextclip.train_caches import FrozenFeatureCache, loader

    images = torch.randint(0, 255, (20, 8, 8, 3), dtype=torch.uint8).numpy()

    class Source:
        mild, captions, calls = [False] * 20, [[f"c{i}-{j}" for j in range(4)] for i in range(20)], 0

        def __len__(self):
            return 20

        def image(self, i):
            Source.calls += 1
            return images[i]

    ds = PairDataset(Source(), range(20), train=True, augment=False, seed=3)
    for epoch in (0, 1, 5):
        ds.set_epoch(epoch)
        assert [ds.caption(k) for k in range(20)] == [ds[k][1] for k in range(20)]
    assert len({ds.caption(k) for k in range(20)}) > 1
    batches, cfg = [[3, 1, 7], [0, 19]], smoke_cfg()
    both = FrozenCaches(FrozenFeatureCache(torch.zeros(2, 4), {}), FrozenFeatureCache(torch.zeros(20, 4)))
    ds = PairDataset(Source(), range(20), train=True, augment=False, seed=3)
    ds.set_epoch(2)
    Source.calls = 0
    got = list(loader(ds, batches, None, cfg, torch.device("cpu"), 0, both))
    assert Source.calls == 0
    assert [b["captions"] for b in got] == [[ds[k][1] for k in b] for b in batches]
    assert all(b["images"] is None and b["input_ids"] is None for b in got)
    text_only = FrozenCaches(FrozenFeatureCache(torch.zeros(2, 4), {}), None)  # images still to be read
    from contextclip.data.collate import PairCollator

    got = list(loader(ds, batches, PairCollator(None, 8, tokenize=False), cfg, torch.device("cpu"), 0, text_only))
    assert got[0]["images"].shape == (3, 3, 8, 8)
