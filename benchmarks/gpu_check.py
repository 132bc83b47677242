"""The one-call GPU check: prepare its carry folder here, run it in a short GPU window there.

    python benchmarks/gpu_check.py prepare DIR            # on this CPU machine: wheels + Fashion-MNIST
    python benchmarks/gpu_check.py run --carry DIR        # on the GPU machine, from the repo root
    python benchmarks/gpu_check.py --dry-run [--out DIR]  # the same sequence here, tiny, on the CPU

The GPU machines this project can reach are bare and offline (PyTorch, numpy, attrs, rich, typer,
pytest, matplotlib, scikit-learn and torchvision are there; textual, cattrs, tomli-w,
pyautoattack, torch-fidelity and submitit are not), and GPU time comes in windows of about 10
minutes. So the check is one prepared command that cannot waste the window:

`prepare DIR` downloads, for CPython 3.12 on manylinux x86-64, the wheels the GPU image lacks
(the versions installed here, with their own missing requirements; no binary wheel is needed)
into DIR/wheels, and copies Debian's Fashion-MNIST files into DIR/fashion-mnist: a folder of a
few MiB, well under the 64 MiB a device call carries (`.gpu_carry/` is git-ignored).

`run` installs the carried wheels offline into a private site folder (`--no-index --no-deps
--target`), puts the repository on the path, then runs, within `--budget-s` (9 minutes by
default) and writing each result into `--out` (or `$OUT`) as soon as it has it, so a call cut
short still returns what it measured:

1. `pytest tests/test_gpu.py` (no host sync in the step, the streaming reader's CUDA branch,
   DAT's views on the device, EMA) -> `gpu_tests.log`, `summary.json`;
2. `ebjdat bench` of `recipes/cifar10.toml` (EB-JDAT on JEM++, WRN-28-10), `recipes/cifar10_sadajem.toml`
   and PGD-AT at batch 64, 128 and 256, eager then compiled, bf16 + channels_last ->
   `bench.jsonl` (one report per line: images/s, s/epoch for 50,000 images, F per image, MFU)
   and `gpu_table.md` (the README's GPU table rows);
3. a short training of the whole pipeline on the GPU: Fashion-MNIST, all 60k, EB-JDAT and
   PGD-AT for a few epochs each, stopped once and resumed, then `ebjdat eval` (standard
   AutoAttack on 1,000 points, fd_ref, a sample grid) -> `train/`;
4. the streaming reader's data stall (`benchmarks/data_stream.py`) -> `data_stream.json`.

Each step is skipped, and says so in `summary.json`, when the time left is below its estimate.
`--dry-run` runs the same sequence on this machine with tiny sizes (the CUDA tests skip, the
bench uses a WRN-10-1 at batch 4 and compiles only PGD-AT's, the training runs a few steps on
digits, whose fd_ref reference trains in seconds) and writes the same files;
`tests/test_gpu_check.py` runs it.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")

#: what the GPU image lacks (device/KINDS.md, read 2026-11-17), in the versions pinned here
MISSING = ["textual", "cattrs", "tomli-w", "pyautoattack", "torch-fidelity", "submitit"]
#: what the GPU image has: a requirement in this set is not carried
GPU_HAS = {
    "attrs", "click", "cloudpickle", "filelock", "fsspec", "jinja2", "markdown-it-py", "matplotlib",
    "mdurl", "numpy", "packaging", "pillow", "platformdirs", "pluggy", "pygments", "pytest", "requests",
    "rich", "scikit-learn", "scipy", "setuptools", "shellingham", "sympy", "tensorboard", "torch",
    "torchvision", "tqdm", "typer", "typing-extensions", "urllib3", "pyyaml", "six",
}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
#: files a carried wheel does without: pyautoattack ships a 45 MB example model in its wheel
SLIM = {"pyautoattack": ("pyautoattack/examples/",)}


def slim_wheel(wheel: Path, drop: tuple[str, ...]) -> None:
    """Rewrite `wheel` without the members under `drop` (and their RECORD lines)."""
    import zipfile

    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if item.filename.startswith(drop):
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                data = b"".join(line for line in data.splitlines(keepends=True)
                                if not any(line.startswith(d.encode()) for d in drop))
            dst.writestr(item, data)
    tmp.replace(wheel)


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def carried_requirements() -> dict[str, str]:
    """{name: version} of MISSING and of their (transitive) requirements the GPU image lacks,
    in the versions installed in this environment."""
    from importlib import metadata

    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    todo = list(MISSING)
    while todo:
        name = _norm(todo.pop())
        if name in found or name in GPU_HAS:
            continue
        found[name] = metadata.version(name)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": "", "python_version": "3.12"}):
                continue
            todo.append(req.name)
    return found


def prepare(carry: Path) -> int:
    wheels = carry / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wanted = carried_requirements()
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *sum((["--platform", p] for p in PLATFORMS), []), "-d", str(wheels),
           *(f"{n}=={v}" for n, v in sorted(wanted.items()))]
    subprocess.run(cmd, check=True)
    for name, drop in SLIM.items():
        for wheel in wheels.glob(f"{name.replace('-', '_')}-*.whl"):
            slim_wheel(wheel, drop)
    data = carry / "fashion-mnist"
    if FASHION.is_dir():
        data.mkdir(exist_ok=True)
        for f in FASHION.glob("*-ubyte.gz"):
            shutil.copyfile(f, data / f.name)
    size = sum(f.stat().st_size for f in carry.rglob("*") if f.is_file())
    print(f"prepared {carry}: {len(list(wheels.glob('*.whl')))} wheels ({', '.join(sorted(wanted))}), "
          f"{len(list(data.glob('*.gz'))) if data.is_dir() else 0} Fashion-MNIST files; {size / 2**20:.1f} MiB")
    if size > 64 * 2**20:
        print(f"gpu_check: {carry} is {size / 2**20:.1f} MiB, over the 64 MiB a device call carries", file=sys.stderr)
        return 1
    return 0


class Check:
    """The sequence, its clock and its record (`summary.json`, rewritten after every step)."""

    def __init__(self, out: Path, budget_s: float, dry: bool, env: dict[str, str]):
        self.out, self.budget_s, self.dry, self.env = out, budget_s, dry, env
        self.started = time.monotonic()
        self.summary: dict[str, Any] = {"dry_run": dry, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                        "budget_s": budget_s, "steps": {}}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def save(self) -> None:
        self.summary["elapsed_s"] = round(time.monotonic() - self.started, 1)
        tmp = self.out / "summary.json.tmp"
        tmp.write_text(json.dumps(self.summary, indent=1))
        tmp.replace(self.out / "summary.json")

    def step(self, name: str, **fields: Any) -> None:
        self.summary["steps"].setdefault(name, {}).update(fields)
        self.save()

    def sh(self, args: list[str], log: Path | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
        limit = max(1.0, min(timeout or self.left(), self.left()))
        try:
            proc = subprocess.run(args, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired as e:
            proc = subprocess.CompletedProcess(args, 124, e.stdout or "", (e.stderr or "") + "\n(timed out)")
        if log is not None:
            with open(log, "a") as f:
                f.write(f"$ {' '.join(args)}\n{proc.stdout}{proc.stderr}\n(exit {proc.returncode})\n")
        return proc


def ebjdat(*args: str) -> list[str]:
    return [sys.executable, "-m", "ebjdat_tui.cli", *args]


def step_tests(c: Check) -> None:
    proc = c.sh([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"],
                c.out / "gpu_tests.log", timeout=150)
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    c.step("gpu_tests", exit=proc.returncode, result=tail)


def step_bench(c: Check) -> None:
    recipes = [("ebjdat-jempp", "recipes/cifar10.toml", []), ("sadajem", "recipes/cifar10_sadajem.toml", []),
               ("pgd_at", "recipes/cifar10.toml", ["method.name=pgd_at"])]
    batches = [4] if c.dry else [64, 128, 256]
    tiny = ["model.depth=10", "model.width=1", 'runtime.device="cpu"', 'runtime.amp="off"'] if c.dry else []
    rows = []
    for compiled in (False, True):
        for label, recipe, sets in recipes:
            if c.dry and compiled and label != "pgd_at":  # one compiled bench is enough to try the path
                continue
            for batch in batches:
                estimate = 5 if c.dry else (75 if compiled else 25)
                key = f"{label} b{batch} {'compiled' if compiled else 'eager'}"
                if c.left() < estimate + 60:
                    c.step("bench", **{key: "skipped: out of time"})
                    continue
                args = [recipe, "--set", f"train.batch_size={batch}", "--set",
                        f"runtime.compile={str(compiled).lower()}", "--set", "runtime.channels_last=true",
                        "--steps", "1" if c.dry else "10", "--json"]
                for s in [*sets, *tiny]:
                    args += ["--set", s]
                proc = c.sh(ebjdat("bench", *args), c.out / "bench.log", timeout=240)
                if proc.returncode != 0:
                    why = (proc.stderr.strip().splitlines() or [""])[-1]
                    c.step("bench", **{key: f"exit {proc.returncode}: {why}"})
                    continue
                report = json.loads(proc.stdout)
                report.update(label=label, compiled=compiled, seconds_per_epoch=50_000 / report["images_per_s"])
                with open(c.out / "bench.jsonl", "a") as f:
                    f.write(json.dumps(report) + "\n")
                mfu = f"{report['mfu'] * 100:.1f} %" if report.get("mfu") else "n/a"
                rows.append(f"| {report['device_name']} | {label} | {batch} | {'compiled' if compiled else 'eager'} | "
                            f"{report['images_per_s']:.0f} | {report['seconds_per_epoch']:.0f} | "
                            f"{report['flops_per_image_F']:.1f} | {mfu} | torch {report['torch']} |")
                (c.out / "gpu_table.md").write_text(
                    "| device | recipe | batch | mode | images/s | s/epoch (50k) | F/image | MFU | torch |\n"
                    "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
                c.step("bench", **{key: {"images_per_s": round(report["images_per_s"], 1),
                                         "mfu": report.get("mfu")}})


def step_train(c: Check, data_root: Path | None) -> None:
    out = c.out / "train"
    out.mkdir(exist_ok=True)
    root = [f'data.root="{data_root}"'] if data_root is not None and not c.dry else []
    # the dry run trains on digits (ships with scikit-learn; its fd_ref reference trains in seconds)
    recipe = "recipes/quickstart.toml" if c.dry else "recipes/fashion_mnist.toml"
    size = (["train.max_steps=6", "model.width=1", 'runtime.device="cpu"', "monitor.gen_every=0"]
            if c.dry else ["train.epochs=3"])
    for label, sets in (("ebjdat", ["method.name=ebjdat"]), ("pgd_at", ["method.name=pgd_at"])):
        if c.left() < (20 if c.dry else 150):
            c.step("train", **{label: "skipped: out of time"})
            continue
        run_dir = out / label
        common = ["--set", f'run.out_dir="{out}"', *sum((["--set", s] for s in [*root, *size, *sets]), [])]
        first = c.sh(ebjdat("run", recipe, *common, "--set", "train.max_steps=3" if c.dry
                            else "train.max_steps=200", "--run-dir", str(run_dir), "--plain"), out / f"{label}.log")
        resumed = c.sh(ebjdat("run", "--resume", str(run_dir), *common, "--plain"), out / f"{label}.log")
        n = "20" if c.dry else "1000"
        attacks = "apgd-ce" if c.dry else "standard"
        ev = c.sh(ebjdat("eval", str(run_dir), "--n", n, "--attacks", attacks, "--n-samples", "40" if c.dry else "1000",
                         "--json", *(["--device", "cpu"] if c.dry else [])), out / f"{label}.log")
        result: dict[str, Any] = {"first_exit": first.returncode, "resume_exit": resumed.returncode,
                                  "eval_exit": ev.returncode}
        if ev.returncode == 0:
            doc = json.loads(ev.stdout)
            (out / f"{label}_eval.json").write_text(json.dumps(doc, indent=1))
            result.update(clean=doc.get("clean_acc"), pgd=doc.get("pgd_acc"), aa=doc.get("aa_acc"),
                          fd_ref=(doc.get("generation") or {}).get("fd_ref"))
            for png in glob.glob(str(run_dir / "eval" / "*samples.png")):
                shutil.copyfile(png, out / f"{label}_samples.png")
        c.step("train", **{label: result})


def step_data_stream(c: Check) -> None:
    if c.left() < (15 if c.dry else 90):
        c.step("data_stream", status="skipped: out of time")
        return
    args = ["--sizes", "32", "--images", "60", "--batch", "16", "--steps", "5"] if c.dry else ["--steps", "100"]
    proc = c.sh([sys.executable, "benchmarks/data_stream.py", *args, "--json", str(c.out / "data_stream.json")],
                c.out / "data_stream.log", timeout=240)
    c.step("data_stream", exit=proc.returncode)


def run(carry: Path | None, out: Path, budget_s: float, dry: bool) -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    paths = [str(ROOT)]
    data_root = None
    if carry is not None:
        site = Path("/tmp/ebjdat-site")
        wheels = sorted(glob.glob(str(carry / "wheels" / "*.whl")))
        if wheels:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                            "--upgrade", "--target", str(site), *wheels], check=True)
            paths.append(str(site))
        if (carry / "fashion-mnist").is_dir():
            data_root = (carry / "fashion-mnist").resolve()
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    c = Check(out, budget_s, dry, env)
    probe = c.sh([sys.executable, "-c", "import torch, ebjdat_tui.cli; print(torch.__version__, "
                  "torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')"])
    c.step("environment", exit=probe.returncode, torch_and_device=probe.stdout.strip(),
           error=probe.stderr.strip()[-500:] or None)
    if probe.returncode != 0:
        return 1
    for name, fn in (("gpu_tests", lambda: step_tests(c)), ("bench", lambda: step_bench(c)),
                     ("train", lambda: step_train(c, data_root)), ("data_stream", lambda: step_data_stream(c))):
        t0 = time.monotonic()
        try:
            fn()
        except Exception as e:  # one step's failure must not cost the others their time
            c.step(name, error=f"{type(e).__name__}: {e}")
        c.step(name, seconds=round(time.monotonic() - t0, 1))
    c.summary["finished"] = True
    c.save()
    print(json.dumps(c.summary, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["prepare", "run"], help="prepare DIR | run")
    parser.add_argument("dir", nargs="?", type=Path, help="prepare: the carry folder to write")
    parser.add_argument("--carry", type=Path, default=None, help="run: the prepared carry folder")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default $OUT, else gpu-check-out)")
    parser.add_argument("--budget-s", type=float, default=540.0, help="run: the time the sequence may take")
    parser.add_argument("--dry-run", action="store_true", help="the same sequence on this CPU, tiny sizes")
    args = parser.parse_args(argv)
    out = args.out or Path(os.environ.get("OUT") or "gpu-check-out")
    if args.dry_run:
        return run(args.carry, out, args.budget_s, dry=True)
    if args.command == "prepare":
        if args.dir is None:
            parser.error("prepare needs the carry folder: prepare DIR")
        return prepare(args.dir)
    if args.command == "run":
        return run(args.carry, out, args.budget_s, dry=False)
    parser.error("give prepare DIR, run, or --dry-run")
    return 2


if __name__ == "__main__":
    sys.exit(main())
