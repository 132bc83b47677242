"""`ebjdat bench`: FLOPs per image in units of F, measured by the flop counter."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import ebjdat

from ebjdat_engine.recipe import resolve
from ebjdat_engine.train.bench import bench

torch.set_num_threads(1)


def test_standard_step_costs_about_three_forwards(tiny_recipe):
    report = bench(resolve(tiny_recipe, ["model.norm=\"none\""]), steps=1, warmup=1)
    # forward (1 F) + backward (2 F, minus the input gradient of the first conv, not needed)
    assert 2.5 < report["flops_per_image_F"] <= 3.01
    assert report["images_per_s"] > 0 and set(report["phases_s"]) == {
        "generative_sampler", "adversarial_sampler", "update"}


def test_ebjdat_jempp_iteration_costs_about_43_F(tiny_recipe):
    # PYLD M=10 (forward + input grad: 2 F each) + attack K=5 (2 F each) + its reference forward
    # (1 F) + four forwards and one backward of the update (12 F): 43 F per image, plus PYLD's
    # 50 inner stem passes (a larger share of F for this tiny CNN than for a WRN: measured
    # 43.0 F for recipes/cifar10.toml). Samplers that computed parameter gradients too would
    # cost ~63 F (the reference code).
    recipe = resolve(tiny_recipe, ["method.name=ebjdat", "method.base=jempp", "sampler.n_steps=10",
                                   "sampler.pyld_inner_steps=5", "adversary.steps=5",
                                   "model.norm=\"none\"", "sampler.buffer_size=128"])
    report = bench(recipe, steps=1, warmup=1)
    assert 40 <= report["flops_per_image_F"] <= 47
    assert report["phases_s"]["generative_sampler"] > 0 and report["phases_s"]["adversarial_sampler"] > 0


@pytest.mark.slow
def test_cli_bench_json(tiny_recipe):
    res = ebjdat("bench", str(tiny_recipe), "--steps", "1", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["images_per_s"] > 0 and report["flops_per_image_F"] == pytest.approx(
        report["flops_per_iteration"] / (report["batch_size"] * report["F_flops"]))


def test_bench_runs_on_synthetic_data_when_the_dataset_is_missing(tiny_recipe, tmp_path):
    recipe = resolve(tiny_recipe, ['data.name="cifar10"', f'data.root="{tmp_path}"', "data.n_valid=0",
                                   "train.batch_size=4"])
    report = bench(recipe, steps=1, warmup=0)
    assert report["data"].startswith("synthetic cifar10") and report["image_shape"] == [3, 32, 32]


def test_bench_reports_f_per_image_for_a_resnet_backbone(tiny_recipe, tmp_path):
    # a torchvision ResNet-18 on synthetic 32x32 CIFAR-shaped data (3x3 stem) and on 8x8 digits
    recipe = resolve(tiny_recipe, ['data.name="cifar10"', f'data.root="{tmp_path}"', "data.n_valid=0",
                                   "train.batch_size=4", 'model.arch="resnet"', "model.depth=18",
                                   "model.width=1", 'method.name="standard"'])
    report = bench(recipe, steps=1, warmup=0)
    assert report["model"] == "resnet18 (3x3 stem)"
    # ResNet-18 with a stride-1 stem at 32 px: ~0.56 GFLOP (multiply-adds x 2 ~ 1.1e9) per image
    assert 0.4e9 < report["F_flops"] < 1.5e9
    assert report["flops_per_image_F"] == pytest.approx(3.0, rel=0.05)  # standard CE: forward + backward
