"""Image folders: `ebjdat data prepare` into a shard cache, training in both placements, exact
resume from a streamed split, a changed folder noticed, DAT's decoupled views and seed folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_RECIPE, ebjdat

from ebjdat_engine.data import DataError, DeviceLoader, ImageSplit, StreamLoader
from ebjdat_engine.data import imagefolder as folder
from ebjdat_engine.data.host import HostImages
from ebjdat_engine.data.synthetic import write_folder
from ebjdat_engine.recipe import RecipeError, resolve
from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.train.session import resolve_for_resume, run

CLASSES = ["n01440764", "n02102040", "n02979186"]


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """3 classes x (14 train + 4 val) PNGs of varying, non-square sizes."""
    return write_folder(tmp_path_factory.mktemp("folder") / "synth", CLASSES, 14, 4, size=(40, 34))


@pytest.fixture
def folder_recipe(tmp_path: Path, image_root: Path) -> Path:
    """The tiny digits recipe, reading the synthetic folder at 32 px instead."""
    text = TINY_RECIPE.format(out_dir=(tmp_path / "runs").as_posix())
    text = text.replace('name = "digits"\nn_valid = 100', f'name = "imagefolder"\nroot = "{image_root.as_posix()}"\n'
                        f'resolution = 32\ncache = "{(tmp_path / "cache").as_posix()}"\nn_valid = 6')
    text = text.replace("batch_size = 32", "batch_size = 8")
    path = tmp_path / "folder.toml"
    path.write_text(text)
    return path


def test_prepare_writes_shards_an_index_and_the_decoded_pixels(image_root, tmp_path, monkeypatch):
    monkeypatch.setattr(folder, "SHARD_BYTES", 3 * 32 * 32 * 5)  # 5 images a shard: several shards
    path, index, built = folder.prepare(str(image_root), None, 32, str(tmp_path), workers=2, progress=False)
    assert built and index["classes"] == CLASSES and index["splits"]["train"]["n"] == 42
    assert index["splits"]["train"]["per_class"] == [14, 14, 14]
    assert len(index["splits"]["train"]["shards"]) == 9  # ceil(42 / 5)
    cached = folder.open_cache(str(image_root), None, 32, str(tmp_path))
    images = cached.images["train"]
    assert isinstance(images.shards[0], np.memmap) and images.shape == (42, 3, 32, 32)
    # image 23 (class 1, file 9) equals decoding its file; gather crosses shards in any order
    expected = folder.decode(str(image_root / "train" / CLASSES[1] / "00009.png"), 32)
    assert np.array_equal(images.gather(np.array([23]))[0], expected)
    assert cached.labels["train"][23] == 1
    idx = np.array([41, 0, 23, 5, 5, 17])
    assert np.array_equal(images.gather(idx), images.numpy()[idx])
    # up to date: not rebuilt
    assert folder.prepare(str(image_root), None, 32, str(tmp_path), progress=False)[2] is False
    # a cache place that cannot be written: the setting to change, not an OSError
    with pytest.raises(DataError, match="cannot write the cache at /proc/ebjdat-cache .*set data.cache"):
        folder.prepare(str(image_root), None, 32, "/proc/ebjdat-cache", workers=1, progress=False)


def test_a_changed_folder_is_refused_until_prepared_again(tmp_path):
    root = write_folder(tmp_path / "f", CLASSES[:2], 3, 2, size=(20, 20))
    folder.prepare(str(root), None, 32, str(tmp_path / "c"), workers=1, progress=False)
    write_folder(tmp_path / "extra", CLASSES[:1], 1, 0, size=(20, 20))
    (tmp_path / "extra" / "train" / CLASSES[0] / "00000.png").rename(root / "train" / CLASSES[0] / "new.png")
    with pytest.raises(DataError, match="changed since it was prepared.*ebjdat data prepare"):
        folder.open_cache(str(root), None, 32, str(tmp_path / "c"))
    assert folder.prepare(str(root), None, 32, str(tmp_path / "c"), workers=1, progress=False)[2]
    assert len(folder.open_cache(str(root), None, 32, str(tmp_path / "c")).images["train"]) == 7


def test_class_lists_pick_and_order_classes_and_report_missing_ones(image_root, tmp_path):
    listing = folder.list_folder(str(image_root), [CLASSES[2], "n09999999", CLASSES[0]])
    assert listing.classes == (CLASSES[2], CLASSES[0]) and listing.missing == ("n09999999",)
    assert {label for _, label in listing.files["train"]} == {0, 1}
    assert all(rel.startswith(f"train/{CLASSES[2]}/") for rel, label in listing.files["train"] if label == 0)
    names = tmp_path / "classes.txt"
    names.write_text(f"# a subset\n{CLASSES[1]} English springer\n\n{CLASSES[0]}\n")
    assert folder.listed_classes([], str(names)) == [CLASSES[1], CLASSES[0]]
    aliased = resolve(None, ['data.name="imagefolder"', f'data.classes="{names.as_posix()}"']).data
    assert aliased.classes == [] and aliased.classes_file == names.as_posix()  # a string is a file
    with pytest.raises(DataError, match="at least two"):
        folder.list_folder(str(image_root), [CLASSES[0], "n0"])


@pytest.mark.slow
def test_cli_prepare_then_run_and_clear_errors(folder_recipe, image_root, tmp_path):
    res = ebjdat("run", str(folder_recipe), "--set", "train.max_steps=2")
    assert res.returncode == 2 and "has not been prepared" in res.stderr and "ebjdat data prepare" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "runs").exists()
    res = ebjdat("data", "prepare", str(folder_recipe), "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert "3 classes, train 42, val 12 images" in res.stdout and "42/42" in res.stderr
    res = ebjdat("data", "prepare", str(folder_recipe), "--set", f'data.root="{tmp_path}/nowhere"')
    assert res.returncode == 2 and "no train/ folder" in res.stderr and "Traceback" not in res.stderr
    res = ebjdat("data", "prepare", str(folder_recipe), "--set", 'data.name="digits"')
    assert res.returncode == 2 and "needs no preparing" in res.stderr


def _losses(run_dir: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_events(run_dir) if e["type"] == "metrics"}


def test_training_in_both_placements_gives_the_same_run_and_a_streamed_resume_is_exact(folder_recipe):
    recipe = resolve(folder_recipe)
    folder.prepare(recipe.data.root, None, 32, recipe.data.cache, workers=1, progress=False)
    args = ["train.max_steps=12", "train.log_every=2"]
    device = run(resolve(folder_recipe, args + ['data.placement="device"', 'run.name="device"']), None)
    stream = run(resolve(folder_recipe, args + ['data.placement="stream"', 'run.name="stream"']), None)
    start = [e for e in read_events(stream.run_dir) if e["type"] == "start"][0]
    assert start["placement"] == "stream" and "3 classes" in start["data_source"]
    assert [e for e in read_events(device.run_dir) if e["type"] == "start"][0]["placement"] == "device"
    a, b = _losses(device.run_dir), _losses(stream.run_dir)
    assert sorted(a) == sorted(b) == [2, 4, 6, 8, 10, 12]
    for step in a:  # the same batches, from the device or streamed from the memory-mapped cache
        assert a[step] == pytest.approx(b[step], abs=1e-6), step
    first = run(resolve(folder_recipe, ["train.max_steps=5", "train.log_every=2",
                                        'data.placement="stream"', 'run.name="split"']), None)
    again = run(resolve_for_resume(first.run_dir, None, ["train.max_steps=12"]), None, resume=first.run_dir)
    assert again.status == "finished"
    c = _losses(first.run_dir)
    for step in (6, 8, 10, 12):
        assert c[step] == pytest.approx(b[step], abs=1e-6), step


def _digits_split(n: int = 40) -> ImageSplit:
    g = torch.Generator().manual_seed(0)
    return ImageSplit(torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g),
                      torch.arange(n) % 10)


def test_each_rank_streams_exactly_its_share_of_the_global_batch():
    split = _digits_split()
    host = ImageSplit(HostImages([split.images.numpy()]), split.labels)
    aug = dict(crop_padding=1, hflip=True, noise_std=0.02)
    whole = DeviceLoader(split, 8, seed=5, **aug)
    ranks = [StreamLoader(host, 8, seed=5, device=torch.device("cpu"), rank=r, world=2, **aug) for r in (0, 1)]
    for epoch, index in ((0, 0), (0, 3), (1, 2), (0, 1)):  # out of order: the reader restarts
        x, y = whole.batch(epoch, index)
        parts = [loader.batch(epoch, index) for loader in ranks]
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
        assert torch.allclose(torch.cat([p[0] for p in parts]), x)
    for loader in ranks:
        loader.close()
        assert loader._thread is None


def test_decoupled_views_and_their_recipe_rules(tmp_path):
    split = _digits_split()
    loader = DeviceLoader(split, 8, seed=1, crop_padding=1, hflip=True, clf_augment="autoaugment",
                          clf_policy="cifar10", cutout=3)
    x, y, x_clf = loader.views(0, 0)
    again = loader.views(0, 0)[2]
    assert x_clf is not None and torch.equal(x_clf, again)  # a function of (seed, epoch, index)
    assert not torch.equal(x_clf, x)
    assert ((x_clf == 0).flatten(1).sum(1) >= 1).all()  # every image has its cutout hole
    assert DeviceLoader(split, 8, seed=1).views(0, 0)[2] is None
    with pytest.raises(RecipeError, match="data.clf_augment: only method 'dat'"):
        resolve(None, ['data.clf_augment="autoaugment"', 'method.name="pgd_at"'])
    with pytest.raises(RecipeError, match="sampler.seed_folder: only method 'dat'"):
        resolve(None, ['sampler.seed_folder="x"'])


@pytest.mark.slow
def test_dat_takes_its_negatives_from_a_seed_folder(tiny_recipe, tmp_path):
    seeds = write_folder(tmp_path / "ood", ["a", "b"], 20, 0, size=(12, 12))
    sets = ['method.name="dat"', f'sampler.seed_folder="{seeds.as_posix()}"', f'data.cache="{tmp_path}/c"',
            'adversary.norm="l2"', 'adversary.eps="0.5"', 'adversary.step_size="0.1"', "adversary.steps=2",
            "sampler.n_steps=2", "sampler.step_size=0.1", 'data.clf_augment="autoaugment"', "data.cutout=2",
            "train.max_steps=3"]
    recipe = resolve(tiny_recipe, sets)
    with pytest.raises(DataError, match="seed_folder=.* has not been prepared"):
        run(recipe, None)
    res = ebjdat("data", "prepare", str(tiny_recipe), *[a for s in sets for a in ("--set", s)])
    assert res.returncode == 0 and "40 seed images at 8x8, 1 channel(s)" in res.stdout, res.stderr
    from ebjdat_engine.data import load_seed_images

    seed_split = load_seed_images(str(seeds), (1, 8, 8), f"{tmp_path}/c", "auto", torch.device("cpu"))
    assert len(seed_split) == 40 and seed_split.images.dtype == torch.uint8
    # the negatives start from the seed images (T = 0 at first: they are the seeds themselves)
    from ebjdat_engine.methods import Batch, MethodContext, build_method
    from ebjdat_engine.models import build_model

    model = build_model(recipe.model, (1, 8, 8), 10)
    dat = build_method(recipe.method, recipe.sampler, recipe.adversary,
                       MethodContext(device=torch.device("cpu"), n_classes=10, image_shape=(1, 8, 8),
                                     input_std=0.5))
    x_seed = seed_split.images[:4].float() / 255
    batch = Batch(torch.rand(4, 1, 8, 8), torch.arange(4), x_seed=x_seed)
    assert torch.equal(dat.draw(model, batch).x_neg, x_seed)
    assert not torch.equal(dat.draw(model, Batch(batch.x, batch.y)).x_neg, x_seed)
    result = run(recipe, None)
    assert result.status == "finished"
    start = [e for e in read_events(result.run_dir) if e["type"] == "start"][0]
    assert start["labels"]["negatives"].startswith(f"seeds from the image folder {seeds.as_posix()}")
    ckpt_events = [e for e in read_events(result.run_dir) if e["type"] == "metrics"]
    assert ckpt_events and all(np.isfinite(e["loss"]) for e in ckpt_events)
