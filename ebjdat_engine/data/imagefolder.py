"""ImageNet-style image folders, decoded once into a uint8 shard cache (`ebjdat data prepare`).

A folder is `ROOT/train/<class>/*.jpg|png|...` and `ROOT/val/<class>/...` (ImageNet's layout
after the usual val re-sort, and any subset of it). `data.classes` (or `data.classes_file`, one
name a line) picks class folders and fixes the label order; empty means every class folder under
`train/`, sorted. Listed classes missing from the folder are reported and left out.

`prepare` decodes every image with PIL in several worker processes, resizes its shorter side to
`data.resolution` (bicubic, antialiased) and centre-crops a square, and writes, per split,
memory-mappable `.npy` shards of at most `SHARD_BYTES` plus a labels array, and `index.json`
last (so a half-written cache is never taken for a finished one). The index holds a checksum of
the source listing (relative path, size and mtime of every file): `open_cache` lists the folder
again and refuses a cache whose folder has changed since, naming the command that rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .host import HostImages
from .sources import DataError

CACHE_FORMAT = 1
#: file endings taken as images (case-insensitive)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
#: split -> folder name under data.root
SPLIT_DIRS = {"train": "train", "val": "val"}
#: upper bound of one shard file
SHARD_BYTES = 256 * 2**20
#: images decoded per task sent to a worker
CHUNK = 64
DEFAULT_CACHE = "~/.cache/ebjdat/imagefolder"


def default_cache() -> Path:
    """`$EBJDAT_CACHE/imagefolder` when that is set, else ~/.cache/ebjdat/imagefolder."""
    base = os.environ.get("EBJDAT_CACHE")
    return Path(base).expanduser() / "imagefolder" if base else Path(DEFAULT_CACHE).expanduser()
PREPARE_HINT = "ebjdat data prepare RECIPE` (with the same --set data.* values)"



@dataclass(frozen=True)
class Listing:
    """What the folder holds: classes in label order, files per split, and their checksum."""

    root: Path
    classes: tuple[str, ...]
    missing: tuple[str, ...]
    files: dict[str, list[tuple[str, int]]]  # split -> [(path relative to root, label)]
    checksum: str

    def describe(self) -> str:
        counts = ", ".join(f"{split} {len(f)}" for split, f in self.files.items())
        return f"{len(self.classes)} classes ({counts} images) in {self.root}"


def listed_classes(classes: list[str], classes_file: str) -> list[str] | None:
    """The recipe's class list (data.classes, else the names in data.classes_file), or None: all."""
    if classes and classes_file:
        raise DataError("give data.classes or data.classes_file, not both")
    if classes_file:
        path = Path(classes_file).expanduser()
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise DataError(f"cannot read data.classes_file={classes_file}: {exc.strerror or exc}") from exc
        names = [ln.split("#", 1)[0].strip() for ln in lines]
        names = [n.split()[0] for n in names if n]
        if not names:
            raise DataError(f"data.classes_file={classes_file} lists no class names")
        return names
    return list(classes) or None


def _image_files(folder: Path) -> list[os.DirEntry]:
    """Image files directly inside `folder` (sorted by name); subfolders are searched too."""
    found: list[os.DirEntry] = []
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=True):
                    stack.append(Path(entry.path))
                elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                    found.append(entry)
    return sorted(found, key=lambda e: e.path)


def _listed(folder: Path, base: Path, digest) -> list[str]:
    """The image files under `folder` as paths relative to `base`, each (path, size, mtime)
    added to the listing checksum `digest`."""
    rels = []
    for entry in _image_files(folder):
        rel = os.path.relpath(entry.path, base)
        st = entry.stat()
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        rels.append(rel)
    return rels


def list_folder(root: str, classes: list[str] | None) -> Listing:
    """Scan `root`'s train/ and val/ trees; DataError naming what is missing."""
    if not root:
        raise DataError("data.name = 'imagefolder' needs data.root: a folder with train/<class>/ and "
                        "val/<class>/ image folders (`--set data.root=DIR`)")
    base = Path(root).expanduser()
    for split, sub in SPLIT_DIRS.items():
        if not (base / sub).is_dir():
            raise DataError(f"data.root={root}: no {sub}/ folder in {base.resolve()}; an image folder "
                            f"holds train/<class>/*.jpg and val/<class>/*.jpg")
    present = sorted(p.name for p in (base / "train").iterdir() if p.is_dir())
    wanted = list(classes) if classes is not None else present
    if len(set(wanted)) != len(wanted):
        dup = sorted({c for c in wanted if wanted.count(c) > 1})
        raise DataError(f"data.classes lists {', '.join(dup)} more than once")
    used = tuple(c for c in wanted if c in present)
    missing = tuple(c for c in wanted if c not in present)
    if len(used) < 2:
        raise DataError(f"data.root={root}: {len(used)} of the {len(wanted)} classes found in "
                        f"{base / 'train'} (it has: {', '.join(present[:10]) or 'no class folders'}"
                        f"{' ...' if len(present) > 10 else ''}); a classifier needs at least two")
    digest = hashlib.sha256()
    files: dict[str, list[tuple[str, int]]] = {}
    for split, sub in SPLIT_DIRS.items():
        rows: list[tuple[str, int]] = []
        for label, name in enumerate(used):
            folder = base / sub / name
            if not folder.is_dir():
                continue
            rows += [(rel, label) for rel in _listed(folder, base, digest)]
        if not rows:
            raise DataError(f"data.root={root}: no images ({', '.join(IMAGE_SUFFIXES)}) under "
                            f"{base / sub}/<class>/")
        files[split] = rows
    digest.update(("classes:" + "\0".join(used)).encode())
    return Listing(base, used, missing, files, digest.hexdigest())


def cache_path(cache: str, root: str, classes: tuple[str, ...] | list[str] | None, resolution: int) -> Path:
    """The cache folder of (folder, class list, resolution) under data.cache (default ~/.cache)."""
    key = json.dumps([str(Path(root).expanduser().resolve()), list(classes or []), resolution])
    name = f"{Path(root).expanduser().resolve().name}-{resolution}px-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    return (Path(cache).expanduser() if cache else default_cache()) / name


def decode(path: str, resolution: int, channels: int = 3) -> np.ndarray:
    """One image file -> (channels, r, r) uint8: shorter side resized to r (bicubic), centre crop;
    RGB for 3 channels, luminance for 1."""
    from PIL import Image

    mode = "RGB" if channels == 3 else "L"
    with Image.open(path) as img:
        img.draft(mode, (resolution, resolution))  # JPEG: decode at a reduced scale when it can
        img = img.convert(mode)
        w, h = img.size
        scale = resolution / min(w, h)
        size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
        img = img.resize(size, Image.Resampling.BICUBIC)
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
        arr = np.asarray(img, dtype=np.uint8)
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _decode_chunk(args: tuple[list[str], int, int]) -> tuple[np.ndarray, list[str]]:
    """Worker task: decode a list of files; unreadable files come back as names (and zeros)."""
    paths, resolution, channels = args
    out = np.zeros((len(paths), channels, resolution, resolution), dtype=np.uint8)
    bad: list[str] = []
    for i, p in enumerate(paths):
        try:
            out[i] = decode(p, resolution, channels)
        except Exception as exc:  # PIL raises many kinds for a broken file
            bad.append(f"{p}: {exc}")
    return out, bad


class Progress:
    """A one-line progress bar on stderr (rewritten in place on a terminal, every 10 % otherwise)."""

    def __init__(self, total: int, label: str, stream=None) -> None:
        self.total, self.label, self.done = max(total, 1), label, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()
        self._shown = -1

    def update(self, n: int) -> None:
        self.done += n
        frac = self.done / self.total
        tenth = int(frac * 10)
        if not self.tty and tenth == self._shown and self.done < self.total:
            return
        self._shown = tenth
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        bar = "#" * int(frac * 30)
        line = f"{self.label} [{bar:<30}] {self.done}/{self.total} {rate:.0f} img/s"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        if self.tty and self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def _read_index(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "index.json").read_text())
    except (OSError, ValueError):
        return None


def list_seed_folder(folder: str) -> Listing:
    """Every image under `folder` (any layout, recursive) as one 'seeds' split, label 0."""
    base = Path(folder).expanduser()
    if not base.is_dir():
        raise DataError(f"sampler.seed_folder={folder} is not a folder; give a folder of images "
                        f"(any layout) or leave it empty for uniform-noise seeds")
    digest = hashlib.sha256()
    rows = [(rel, 0) for rel in _listed(base, base, digest)]
    if not rows:
        raise DataError(f"sampler.seed_folder={folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    return Listing(base, ("seeds",), (), {"seeds": rows}, digest.hexdigest())


def seed_cache_path(cache: str, folder: str, resolution: int, channels: int) -> Path:
    key = json.dumps([str(Path(folder).expanduser().resolve()), resolution, channels])
    return ((Path(cache).expanduser() if cache else default_cache()) /
            f"seeds-{Path(folder).expanduser().resolve().name}-{resolution}px-c{channels}-"
            f"{hashlib.sha1(key.encode()).hexdigest()[:10]}")


def prepare(root: str, classes: list[str] | None, resolution: int, cache: str, *, workers: int = 0,
            log: Callable[[str], None] | None = None, progress: bool = True) -> tuple[Path, dict, bool]:
    """Decode the folder into its cache; returns (cache folder, index, whether it was (re)built).

    An existing cache whose checksum matches the folder is left as it is. The new cache is
    written beside the final folder and renamed into place, so a killed prepare leaves the old
    cache (or none) and a `*.partial-PID` folder that the next prepare removes.
    """
    return build_cache(list_folder(root, classes), cache_path(cache, root, classes, resolution),
                       resolution, 3, workers=workers, log=log, progress=progress)


def prepare_seeds(folder: str, resolution: int, channels: int, cache: str, *, workers: int = 0,
                  log: Callable[[str], None] | None = None, progress: bool = True) -> tuple[Path, dict, bool]:
    """Decode a seed folder (DAT's out-of-distribution images) at the data's size and channels."""
    return build_cache(list_seed_folder(folder), seed_cache_path(cache, folder, resolution, channels),
                       resolution, channels, workers=workers, log=log, progress=progress)


def build_cache(listing: Listing, target: Path, resolution: int, channels: int, *, workers: int = 0,
                log: Callable[[str], None] | None = None, progress: bool = True) -> tuple[Path, dict, bool]:
    """Decode `listing`'s files into `target` (see `prepare`)."""
    say = log or (lambda _t: None)
    old = _read_index(target)
    if old and old.get("format") == CACHE_FORMAT and old.get("checksum") == listing.checksum:
        say(f"cache up to date: {target} ({listing.describe()})")
        return target, old, False
    say(f"preparing {listing.describe()} at {resolution}x{resolution} -> {target}")
    try:
        return _build(listing, target, resolution, channels, workers, progress, say)
    except OSError as e:  # an unwritable or full cache place (never a traceback after the decode)
        shutil.rmtree(target.parent / f"{target.name}.partial-{os.getpid()}", ignore_errors=True)
        raise DataError(f"cannot write the cache at {target.parent} ({e.strerror or e}); set data.cache "
                        f"(or EBJDAT_CACHE) to a writable directory with room for it") from None


def _build(listing: Listing, target: Path, resolution: int, channels: int, workers: int,
           progress: bool, say: Callable[[str], None]) -> tuple[Path, dict, bool]:
    """build_cache's work: decode into `target`.partial-PID, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(target.name + ".partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    work = target.parent / f"{target.name}.partial-{os.getpid()}"
    work.mkdir()
    workers = workers or min(8, os.cpu_count() or 1)
    t0 = time.perf_counter()
    image_bytes = channels * resolution * resolution
    per_shard = max(1, SHARD_BYTES // image_bytes)
    splits: dict[str, dict] = {}
    bad: list[str] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for split, rows in listing.files.items():
            n = len(rows)
            shard_files = []
            shards = []
            for s, start in enumerate(range(0, n, per_shard)):
                count = min(per_shard, n - start)
                name = f"{split}-{s:05d}.npy"
                shards.append(np.lib.format.open_memmap(work / name, mode="w+", dtype=np.uint8,
                                                        shape=(count, channels, resolution, resolution)))
                shard_files.append({"file": name, "n": count})
            labels = np.array([label for _, label in rows], dtype=np.int64)
            np.save(work / f"{split}-labels.npy", labels)
            paths = [str(listing.root / rel) for rel, _ in rows]
            tasks = [(paths[i:i + CHUNK], resolution, channels) for i in range(0, n, CHUNK)]
            bar = Progress(n, f"{split:>5}") if progress else None
            for t, (arr, chunk_bad) in enumerate(pool.map(_decode_chunk, tasks)):
                done = 0
                while done < len(arr):  # a chunk may straddle two shards (all but the last are full)
                    shard, offset = divmod(t * CHUNK + done, per_shard)
                    take = min(len(arr) - done, per_shard - offset)
                    shards[shard][offset:offset + take] = arr[done:done + take]
                    done += take
                bad.extend(chunk_bad)
                if bar:
                    bar.update(len(arr))
            for sh in shards:
                sh.flush()
            del shards
            counts = np.bincount(labels, minlength=len(listing.classes)).tolist()
            splits[split] = {"n": n, "labels": f"{split}-labels.npy", "shards": shard_files,
                             "per_class": counts}
    if bad:
        shutil.rmtree(work, ignore_errors=True)
        shown = "\n  ".join(bad[:10])
        raise DataError(f"{len(bad)} image file(s) could not be decoded (remove or replace them, then "
                        f"prepare again):\n  {shown}" + ("\n  ..." if len(bad) > 10 else ""))
    index = {
        "format": CACHE_FORMAT, "root": str(listing.root.resolve()), "resolution": resolution,
        "channels": channels, "classes": list(listing.classes), "missing_classes": list(listing.missing),
        "checksum": listing.checksum, "splits": splits,
        "resize": "shorter side to resolution (PIL bicubic), centre crop",
        "seconds": round(time.perf_counter() - t0, 2), "workers": workers,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = work / "index.json.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, work / "index.json")
    if target.exists():
        aside = target.parent / f"{target.name}.partial-old-{os.getpid()}"
        os.replace(target, aside)
        os.replace(work, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(work, target)
    total = sum(s["n"] for s in splits.values())
    say(f"wrote {total} images in {index['seconds']:.1f} s "
        f"({total / max(index['seconds'], 1e-9):.0f} img/s, {workers} workers) to {target}")
    return target, index, True


@dataclass(frozen=True)
class CachedFolder:
    """A prepared folder: per split memory-mapped images and labels, and the index."""

    path: Path
    index: dict
    images: dict[str, HostImages]
    labels: dict[str, np.ndarray]


def open_cache(root: str, classes: list[str] | None, resolution: int, cache: str,
               prepare_hint: str = PREPARE_HINT) -> CachedFolder:
    """Open the cache of this folder; DataError when it is missing or the folder has changed."""
    return _open(list_folder(root, classes), cache_path(cache, root, classes, resolution),
                 f"data.root={root}", resolution, prepare_hint)


def open_seeds(folder: str, resolution: int, channels: int, cache: str,
               prepare_hint: str = PREPARE_HINT) -> CachedFolder:
    """Open a prepared seed folder's cache (see `open_cache`)."""
    return _open(list_seed_folder(folder), seed_cache_path(cache, folder, resolution, channels),
                 f"sampler.seed_folder={folder}", resolution, prepare_hint)


def _open(listing: Listing, target: Path, what: str, resolution: int, prepare_hint: str) -> CachedFolder:
    index = _read_index(target)
    if index is None:
        raise DataError(f"{what} has not been prepared at {resolution} px (no cache in "
                        f"{target}); run `{prepare_hint} first")
    if index.get("format") != CACHE_FORMAT:
        raise DataError(f"the cache {target} has format {index.get('format')}, this ebjdat reads "
                        f"{CACHE_FORMAT}; run `{prepare_hint} again")
    if index.get("checksum") != listing.checksum:
        now = {s: len(f) for s, f in listing.files.items()}
        then = {s: v["n"] for s, v in index["splits"].items()}
        raise DataError(f"{what} changed since it was prepared (images then {then}, now "
                        f"{now}, or files modified); run `{prepare_hint} again")
    images, labels = {}, {}
    for split, info in index["splits"].items():
        shards = [np.load(target / s["file"], mmap_mode="r") for s in info["shards"]]
        images[split] = HostImages(shards)
        labels[split] = np.load(target / info["labels"])
    return CachedFolder(target, index, images, labels)


__all__ = ["CachedFolder", "Listing", "build_cache", "cache_path", "decode", "list_folder",
           "list_seed_folder", "listed_classes", "open_cache", "open_seeds", "prepare", "prepare_seeds"]
