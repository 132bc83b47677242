"""runtime.amp: 'auto' resolves to bf16 only where the device computes bf16 natively; an explicit
'bf16' on a CPU that emulates it is honoured with a warning; the start event records the value."""

from __future__ import annotations

import contextlib

import pytest
import torch

from ebjdat_engine.recipe import resolve
from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.train import runtime
from ebjdat_engine.train.runtime import amp_of, amp_warning, autocast, resolve_amp
from ebjdat_engine.train.session import run

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(autouse=True)
def _fresh_resolution():
    runtime._resolved.cache_clear()
    yield
    runtime._resolved.cache_clear()


def _cpu(monkeypatch, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


def _cuda(monkeypatch, bf16: bool) -> list[bool]:
    calls = []

    def supported(including_emulation: bool = True) -> bool:
        calls.append(including_emulation)
        return bf16 or including_emulation  # emulated bf16 must not count

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    return calls


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"),
                         [(False, False, "off"), (True, False, "bf16"), (False, True, "bf16"),
                          (True, True, "bf16")])
def test_auto_on_a_cpu_is_bf16_only_with_native_bf16(monkeypatch, avx512_bf16, amx, expected):
    _cpu(monkeypatch, avx512_bf16, amx)
    assert resolve_amp("auto", CPU) == expected


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "off")])
def test_auto_on_cuda_follows_native_bf16_support(monkeypatch, bf16, expected):
    calls = _cuda(monkeypatch, bf16)
    _cpu(monkeypatch, True, True)  # the host CPU does not matter for a CUDA device
    assert resolve_amp("auto", CUDA) == expected
    assert calls == [False]


@pytest.mark.parametrize("amp", ["bf16", "fp16", "off"])
def test_explicit_values_are_kept(monkeypatch, amp):
    _cpu(monkeypatch, False, False)
    assert resolve_amp(amp, CPU) == amp


def test_auto_off_means_no_autocast(monkeypatch, tiny_recipe):
    _cpu(monkeypatch, False, False)
    cfg = resolve(tiny_recipe, ['runtime.amp="auto"']).runtime
    assert amp_of(cfg, CPU) == "off"
    with autocast(cfg, CPU):
        assert not torch.is_autocast_enabled("cpu")


def test_explicit_bf16_on_an_emulating_cpu_warns_once_per_run(monkeypatch, tiny_recipe, capsys):
    _cpu(monkeypatch, False, False)
    cfg = resolve(tiny_recipe, ['runtime.amp="bf16"']).runtime
    assert "slower than fp32" in amp_warning(cfg, CPU) and "runtime.amp" in amp_warning(cfg, CPU)
    assert amp_warning(resolve(tiny_recipe, ['runtime.amp="auto"']).runtime, CPU) is None
    assert amp_warning(resolve(tiny_recipe, ['runtime.amp="off"']).runtime, CPU) is None
    _cpu(monkeypatch, True, False)
    assert amp_warning(cfg, CPU) is None  # native bf16: no warning
    _cpu(monkeypatch, False, False)
    recipe = resolve(tiny_recipe, ['runtime.amp="bf16"', "train.max_steps=2", "eval.every_epochs=0",
                                   "monitor.every=0", "monitor.gen_every=0", "monitor.samples_every=0"])
    result = run(recipe, str(tiny_recipe))
    assert result.status == "finished"
    err = capsys.readouterr().err
    assert err.count("runtime.amp = \"bf16\" on a CPU without native bf16") == 1
    start = next(e for e in read_events(result.run_dir) if e["type"] == "start")
    assert start["amp"] == "bf16"  # honoured


@pytest.mark.parametrize(("native", "expected"), [(False, "off"), (True, "bf16")])
def test_the_start_event_records_the_resolved_amp(monkeypatch, tiny_recipe, capsys, native, expected):
    _cpu(monkeypatch, native, False)
    recipe = resolve(tiny_recipe, ['runtime.amp="auto"', "train.max_steps=2", "eval.every_epochs=0",
                                   "monitor.every=0", "monitor.gen_every=0", "monitor.samples_every=0"])
    result = run(recipe, str(tiny_recipe))
    start = next(e for e in read_events(result.run_dir) if e["type"] == "start")
    assert start["amp"] == expected
    assert "without native bf16" not in capsys.readouterr().err


def test_bench_reports_the_resolved_amp(monkeypatch, tiny_recipe):
    from ebjdat_engine.train.bench import bench

    _cpu(monkeypatch, False, False)
    report = bench(resolve(tiny_recipe, ['runtime.amp="auto"', 'model.norm="none"']), steps=1, warmup=0)
    assert report["amp"] == "off"
