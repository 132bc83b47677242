"""The recipe schema: one frozen attrs class per TOML section, a doc on every field.

Each engine component is built from its own section only (`DataConfig` for the data,
`ModelConfig` for the network, ...); only the top-level builder sees the whole `Recipe`.
Defaults follow ALGORITHMS.md §11 where the method fixes a value and are otherwise our choice;
recipes in `recipes/` say in comments where each value comes from.
"""

from __future__ import annotations

from typing import Optional

import attrs

from .fields import (
    Budget,
    CheckError,
    all_of,
    at_least,
    each,
    field,
    in_range,
    increasing,
    length,
    non_negative,
    one_of,
    positive,
    probability,
)

DATASETS = ("digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder")
#: Where the training split lives: decided by its size, on the device, or streamed from the host.
PLACEMENTS = ("auto", "device", "stream")
#: Classifier-stream augmentation (DAT's decoupled augmentation).
CLF_AUGMENTS = ("none", "autoaugment")
AUTOAUGMENT_POLICIES = ("cifar10", "imagenet", "svhn")
ARCHS = ("wrn", "cnn", "resnet")
NORMS = ("none", "batch", "group", "affine")
STEMS = ("auto", "small", "large")
#: arch 'resnet': (depth, width) -> torchvision builder name (models/resnet.py builds them)
RESNET_VARIANTS = {(18, 1): "resnet18", (34, 1): "resnet34", (50, 1): "resnet50", (101, 1): "resnet101",
                   (50, 2): "wide_resnet50_2", (101, 2): "wide_resnet101_2", (50, 4): "wide_resnet50_4"}


def wrn_depth_problem(depth: int) -> str | None:
    """Why a Wide-ResNet cannot have `depth` (it must be 6n + 4, n >= 1), or None when it can."""
    if depth < 10 or (depth - 4) % 6 != 0:
        return f"Wide-ResNet depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), got {depth}"
    return None


def resnet_variant_problem(depth: int, width: int) -> str | None:
    """Why arch 'resnet' has no `depth` x `width` (listing the pairs it has), or None."""
    if (depth, width) in RESNET_VARIANTS:
        return None
    valid = ", ".join(f"depth {d} width {w}" for d, w in RESNET_VARIANTS)
    return f"arch 'resnet' has no depth {depth} with width {width}; use one of: {valid}"
#: Methods the engine trains (one module each in ebjdat_engine/methods/).
METHODS = ("standard", "pgd_at", "trades", "jem", "jempp", "sadajem", "ebjdat", "dat")
#: Generative bases EB-JDAT is grafted on (ALGORITHMS.md §4.4).
BASES = ("jem", "jempp", "sadajem")
POLICIES = ("warn", "stop", "rollback")
#: Which weights of a checkpoint to use: its EMA copy when it has one, the EMA copy, the trained ones.
WEIGHT_CHOICES = ("auto", "ema", "raw")
PROFILES = ("standard", "reference")
#: What EB-JDAT's inner max ascends (ALGORITHMS.md §4.2 (a), §4.3; samplers/adversarial.py).
OBJECTIVES = ("auto", "logit_cosine", "ce_cosine", "ce", "energy")
#: Objectives the released code has (its line and its commented-out alternative): the only ones
#: the `reference` profile runs.
REFERENCE_OBJECTIVES = ("logit_cosine", "ce_cosine")
#: EB-JDAT's h2: x̃ as extra contrastive-divergence negatives (released) or paired alignment (text).
H2_FORMS = ("auto", "negatives", "align")


def resolved_objective(objective: str, profile: str) -> str:
    """`adversary.objective` with 'auto' resolved: the paper's text ('energy') under the standard
    profile, the released code ('logit_cosine') under the reference profile."""
    if objective != "auto":
        return objective
    return "logit_cosine" if profile == "reference" else "energy"


def resolved_h2(h2: str, profile: str) -> str:
    """`method.h2` with 'auto' resolved: 'align' (the paper's text) under the standard profile,
    'negatives' (the released code) under the reference profile."""
    if h2 != "auto":
        return h2
    return "negatives" if profile == "reference" else "align"


def _budget_check(value: Budget) -> None:
    value.value  # noqa: B018 - parsing raises CheckError with the message to show


def _attacks_check(value: str) -> None:
    names = [a.strip() for a in value.split(",")]
    known = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
    if value.strip() != "standard" and (not names or any(a not in known for a in names)):
        raise CheckError(f"must be 'standard' or a comma list of {', '.join(known)}, got {value!r}")


def _run_name_check(value: str) -> None:
    if "/" in value or "\\" in value or value in (".", "..") or "\0" in value:
        raise CheckError(f"must be a plain directory name under run.out_dir (no '/', not '.' or "
                         f"'..'), got {value!r}; put the location in run.out_dir or --run-dir")
    if len(value.encode()) > 200:
        raise CheckError(f"is {len(value.encode())} bytes long; use at most 200 (file systems allow 255, "
                         f"and a '-N' suffix may be added)")


def _device_check(value: str) -> None:
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return
    raise CheckError(f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")


@attrs.frozen
class RunConfig:
    """[run]: naming and seeding of a run."""

    name: str = field("", "Run directory name under out_dir; empty: '<recipe stem>-<date>-<time>'. A plain "
                      "name: no '/', not '.' or '..', at most 200 characters.", check=_run_name_check)
    seed: int = field(0, "Seed of every random number generator (torch, numpy, python, data order).",
                      check=at_least(0))
    out_dir: str = field("runs", "Directory that holds run directories.")


@attrs.frozen
class DataConfig:
    """[data]: which dataset, where it lives, how the training stream is augmented."""

    name: str = field("digits", "Dataset: 'digits' (ships with scikit-learn), 'fashion-mnist', "
                      "'cifar10', 'cifar100' or 'imagefolder' (train/<class>/, val/<class>/ trees, "
                      "decoded once by `ebjdat data prepare`).", check=one_of(*DATASETS))
    root: str = field("", "Where the files are. Empty: /usr/share/datasets/fashion-mnist for "
                      "fashion-mnist, ./data for CIFAR; unused for digits; for imagefolder the folder "
                      "holding train/ and val/.")
    classes: list[str] = field(list, "imagefolder: class folder names, in label order (empty: every "
                               "folder under train/, sorted). Listed names missing from the folder "
                               "are reported and left out. A string is a file of names (data.classes_file).",
                               factory=True)
    classes_file: str = field("", "imagefolder: a text file of class folder names, one a line (# "
                              "comments), instead of data.classes. Relative to the working directory.")
    resolution: int = field(64, "imagefolder: images are resized (shorter side) and centre-cropped "
                            "to this many pixels, 32..256.", check=in_range(32, 256))
    cache: str = field("", "imagefolder: where `ebjdat data prepare` writes its uint8 shard cache "
                       "(empty: $EBJDAT_CACHE/imagefolder, else ~/.cache/ebjdat/imagefolder).")
    placement: str = field("auto", "Where the training split lives: 'device' (whole, as uint8 "
                           "tensors), 'stream' (host memory or memory-mapped shards, batches read in "
                           "the background and copied while the step computes), or 'auto' (device "
                           "when it takes under a quarter of the device's memory).",
                           check=one_of(*PLACEMENTS))
    download: bool = field(False, "Let torchvision download a missing dataset (needs internet).")
    n_valid: int = field(0, "Training images held out (fixed by run.seed) as a validation split; "
                         "0: none, and no best.pt is kept.", check=at_least(0))
    n_train: int = field(0, "Train on this many training images only (0: all): a subset drawn with the "
                         "validation split by the same run.seed permutation (for CPU-sized studies).",
                         check=at_least(0))
    crop_padding: int = field(0, "Reflect-pad by this many pixels and random-crop back (0: off).",
                              check=at_least(0))
    hflip: bool = field(False, "Random horizontal flips of training images.")
    noise_std: float = field(0.0, "Std of Gaussian noise added to training images, in pixel units of "
                             "[0, 1] (JEM's 0.03 in [-1, 1] units is 0.015 here).", check=non_negative)
    px_augment: bool = field(False, "Apply crop_padding / hflip to the p(x) stream too (JEM++: yes; "
                             "SADA-JEM's DA exclusion: no).")
    px_noise_std: float = field(0.0, "Std of Gaussian noise on the p(x) stream, pixel units (the "
                                "JEM line's 0.03 in [-1, 1] units is 0.015).", check=non_negative)
    clf_augment: str = field("none", "Extra augmentation of the classifier stream only (DAT's "
                             "decoupled augmentation): 'none' or 'autoaugment' (torchvision's v2 "
                             "AutoAugment on batched device tensors, one policy draw per group of "
                             "16 images). The energy stream keeps crop_padding / hflip.",
                             check=one_of(*CLF_AUGMENTS))
    clf_policy: str = field("cifar10", "AutoAugment policy: 'cifar10', 'imagenet' or 'svhn'.",
                            check=one_of(*AUTOAUGMENT_POLICIES))
    cutout: int = field(0, "Cutout on the classifier stream: a square of this many pixels zeroed at "
                        "a random centre per image (0: off; DAT's CIFAR setting is 16).",
                        check=at_least(0))


@attrs.frozen
class ModelConfig:
    """[model]: the classifier whose logits define the energy."""

    arch: str = field("cnn", "'wrn' (Wide-ResNet, pre-activation, as in the JEM line), 'cnn' "
                      "(a small CNN for 8x8 and 28x28 inputs) or 'resnet' (torchvision's ResNets, "
                      "stem adapted to the resolution).", check=one_of(*ARCHS))
    depth: int = field(28, "WRN depth, 6n+4 (e.g. 10, 16, 28, 34); ResNet depth 18, 34, 50 or 101.",
                       check=at_least(10))
    width: int = field(10, "WRN widening factor; for 'cnn', the channel multiplier (base 16); for "
                       "'resnet', 1, 2 (Wide-ResNet-50-2 / 101-2) or 4 (Wide-ResNet-50-4).", check=at_least(1))
    norm: str = field("none", "Normalisation layers: 'none', 'batch', 'group' or 'affine' (a learned "
                      "per-channel scale and shift, no statistics: what a BatchNorm becomes in a "
                      "warm start when it cannot be folded into a convolution).", check=one_of(*NORMS))
    bn_momentum: float = field(0.1, "BatchNorm momentum in PyTorch's sense (the JEM line uses 0.9).",
                               check=probability)
    dropout: float = field(0.0, "Dropout rate inside residual blocks.", check=in_range(0.0, 0.99))
    leak: float = field(0.2, "LeakyReLU negative slope (0.2 in the JEM line).", check=in_range(0.0, 1.0))
    input_mean: float = field(0.5, "Per-pixel mean the model subtracts from [0, 1] inputs.",
                              check=in_range(0.0, 1.0))
    input_std: float = field(0.5, "Per-pixel std the model divides by (0.5 maps [0, 1] to [-1, 1] "
                             "as in the JEM line).", check=positive)
    pool: int = field(1, "'cnn' only: the side of the average-pooled feature map the linear head "
                      "reads. 1: global average pooling (the JEM line); 7 on 28x28 inputs keeps the "
                      "7x7 layout (a flattened head: Fashion-MNIST's classes differ by where things are).",
                      check=at_least(1))
    stem: str = field("auto", "'resnet' only: the first layers. 'small' (3x3 stride-1 convolution, no "
                      "max-pool: CIFAR / downsampled ImageNet), 'large' (torchvision's 7x7 stride-2 "
                      "convolution and 3x3 max-pool: about 1/15 of the FLOPs at the same resolution), "
                      "'auto' (small up to 64 px, large above).", check=one_of(*STEMS))
    init_from: Optional[str] = field(None, "Warm start: a run directory or checkpoint file whose "
                                     "weights (its last checkpoint) start this run; not the optimizer (that is "
                                     "--resume). BatchNorm is folded into the preceding convolutions "
                                     "when the source has it and this recipe has norm 'none' (DAT stage "
                                     "1 -> 2). Relative to the working directory.")
    init_weights: str = field("auto", "Which weights of init_from: 'auto' (its EMA copy when it kept "
                              "one), 'ema' or 'raw'.", check=one_of(*WEIGHT_CHOICES))


@attrs.frozen
class MethodConfig:
    """[method]: the training objective and its loss weights."""

    name: str = field("standard", "Training method: 'standard' (CE), 'pgd_at', 'trades', 'jem', 'jempp', "
                      "'sadajem', 'ebjdat' or 'dat'.", check=one_of(*METHODS))
    base: str = field("jempp", "EB-JDAT's generative base: 'jem' (SGLD, uniform buffer), 'jempp' (PYLD) "
                      "or 'sadajem' (SGLD + SAM).", check=one_of(*BASES))
    profile: str = field("standard", "'standard': pixel-unit budgets, projection every step. "
                         "'reference': the released EB-JDAT code's units and behaviour, labelled "
                         "in every output.", check=one_of(*PROFILES))
    w_ce: float = field(1.0, "Weight of cross-entropy on clean labelled images.", check=non_negative)
    w1: float = field(1.0, "Weight of the generative term h1: the p(x) contrastive-divergence loss "
                      "(JEM family, EB-JDAT) or DAT's BCE.", check=non_negative)
    w2: float = field(0.1, "EB-JDAT h2: weight of the clean-vs-adversarial energy contrast (reference "
                      "scripts 0.1, paper 1.0; 0: no h2).", check=non_negative)
    h2: str = field("auto", "EB-JDAT h2, what the clean-vs-adversarial term computes (E = -logsumexp l): "
                    "'negatives' (the released code: w2 * [mean f(x~) - mean f(x_p)], x~ as extra "
                    "contrastive-divergence negatives against the unlabelled p(x) batch, so it RAISES "
                    "E(x~)); 'align' (the paper's text, min E(x~) - E(x): w2 * mean_i [E(x~_i) - E(x_i)], "
                    "each x~_i paired with the clean image x_i it came from, so it LOWERS E(x~) "
                    "towards E(x)); 'auto': 'align' under profile 'standard', 'negatives' under "
                    "'reference'.", check=one_of(*H2_FORMS))
    w3: float = field(1.0, "Weight of cross-entropy on adversarial examples (EB-JDAT h3, PGD-AT, DAT).",
                      check=non_negative)
    trades_beta: float = field(6.0, "TRADES: weight of KL(p(x) || p(x_adv)).", check=non_negative)
    l2_energy: float = field(0.0, "Energy L2 stabiliser lambda * (f(x)^2 + f(x_q)^2) (JEM issue #4, "
                             "SADA-JEM's l2_coeff).", check=non_negative)
    sam_rho: float = field(2.0, "SAM radius rho (SADA-JEM and EB-JDAT on it).", check=positive)
    sam_adaptive: bool = field(True, "Adaptive SAM (SADA-JEM turns it on since rho >= 0.5).")


@attrs.frozen
class SamplerConfig:
    """[sampler]: the generative sampler and its replay buffer (the method picks the algorithm).

    SGLD/PYLD step sizes, noise and clamps are in the units of the model's normalised input
    (the JEM line's [-1, 1]), so the papers' numbers carry over unchanged; DAT's generative PGD
    step is in pixel units of [0, 1].
    """

    n_steps: int = field(10, "Sampler steps per iteration: SGLD steps, PYLD outer steps M, or the "
                         "maximum T of DAT's step curriculum.", check=at_least(1))
    step_size: float = field(1.0, "SGLD step size on the gradient of f = logsumexp (DAT: L2 step in "
                             "pixel units, 0.1).", check=non_negative)
    noise_std: float = field(0.0, "Std of the Gaussian noise added each SGLD step (JEM: 0.01).",
                             check=non_negative)
    grad_clamp: float = field(1.0, "Per-pixel clamp of the SGLD gradient (0: off; JEM: off).",
                              check=non_negative)
    pyld_inner_steps: int = field(5, "PYLD inner steps N (JEM++).", check=at_least(1))
    pyld_step: float = field(0.2, "PYLD inner step size eta (JEM++).", check=positive)
    buffer_size: int = field(10000, "Replay buffer size.", check=at_least(1))
    reinit_freq: float = field(0.05, "Probability that a chain restarts from the init distribution.",
                               check=probability)
    buffer_init: str = field("uniform", "'uniform' (JEM), 'class_gaussian' (JEM++'s informative init, "
                             "fitted on the train set) or 'data_noise' (train images plus noise).",
                             check=one_of("uniform", "class_gaussian", "data_noise"))
    bn_mode: str = field("train", "BatchNorm mode while sampling: 'train' (the JEM line) or 'eval'.",
                         check=one_of("train", "eval"))
    auc_threshold: float = field(0.8, "DAT: raise T when the running AUC (real vs negatives) reaches this.",
                                 check=probability)
    auc_window: int = field(1000, "DAT: images in the running AUC before T may rise.", check=at_least(1))
    auc_every: int = field(10, "DAT: check the running AUC every this many steps (one host sync; its "
                           "own cadence, independent of train.log_every).", check=at_least(1))
    seed_folder: str = field("", "DAT: a folder of out-of-distribution images (any layout, searched "
                             "recursively) that the negatives start from, decoded to the data's size "
                             "by `ebjdat data prepare`; empty: uniform-noise seeds.")


@attrs.frozen
class AdversaryConfig:
    """[adversary]: the attack used inside training (PGD, TRADES, EB-JDAT ascent)."""

    norm: str = field("linf", "Threat model: 'linf' or 'l2' (DAT: l2).", check=one_of("linf", "l2"))
    eps: Budget = field(Budget("8/255"), "Radius in pixel units of [0, 1] images, written with "
                        "explicit units, e.g. \"8/255\" (profile 'reference' reads it in [-1, 1] units).",
                        check=_budget_check)
    step_size: Budget = field(Budget("2/255"), "Step size, same units as eps.", check=_budget_check)
    steps: int = field(5, "Attack steps K (EB-JDAT: 5; PGD-AT / TRADES: 10).", check=at_least(1))
    random_start: bool = field(True, "Start from a random point in the ball (TRADES: x + 0.001 N(0, I)).")
    objective: str = field("auto", "What EB-JDAT's inner max ascends (sign steps in the eps-ball; D is "
                           "the logit-cosine distance to the clean logits): 'logit_cosine' (l_y(x~) + D, "
                           "the released code: it raises the true logit, so x~ is made more confident "
                           "and only D makes it adversarial), 'ce_cosine' (CE + D, the released code's "
                           "commented-out alternative), 'ce' (CE alone: Madry's PGD), 'energy' (E(x~) = "
                           "-logsumexp l(x~): the paper's 'reverse SGLD along the energy ascent', with "
                           "adversary.noise as its Langevin noise); 'auto': 'energy' under profile "
                           "'standard', 'logit_cosine' under 'reference'. Other methods ignore it.",
                           check=one_of(*OBJECTIVES))
    noise: float = field(0.0, "EB-JDAT ascent: std of Gaussian noise added after each sign step, pixel "
                         "units of [0, 1] images (the Langevin noise of 'reverse SGLD'; 0: none, as "
                         "the released code). The result is still projected onto the eps-ball.",
                         check=non_negative)
    bn_mode: str = field("eval", "BatchNorm mode while attacking.", check=one_of("train", "eval"))


@attrs.frozen
class OptimConfig:
    """[optim]: optimiser and learning-rate schedule."""

    name: str = field("sgd", "'sgd' (with momentum) or 'adam'.", check=one_of("sgd", "adam"))
    lr: float = field(0.1, "Base learning rate.", check=positive)
    momentum: float = field(0.9, "SGD momentum.", check=in_range(0.0, 1.0))
    nesterov: bool = field(False, "Nesterov momentum (SGD).")
    betas: list[float] = field(lambda: [0.9, 0.999], "Adam betas.", factory=True,
                               check=all_of(length(2), each(in_range(0.0, 0.999999))))
    weight_decay: float = field(5e-4, "L2 weight decay.", check=non_negative)
    warmup_steps: int = field(0, "Linear warm-up from 0 over this many iterations.", check=at_least(0))
    decay_epochs: list[int] = field(list, "Epochs at which the lr is multiplied by decay_factor.",
                                    factory=True, check=all_of(each(at_least(1)), increasing))
    decay_factor: float = field(0.2, "Multiplicative lr decay at each of decay_epochs.",
                                check=in_range(0.0, 1.0))


@attrs.frozen
class TrainConfig:
    """[train]: length of training, batch sizes, logging and checkpoint cadence."""

    epochs: int = field(10, "Epochs over the training set (one epoch: floor(n_train / batch_size) steps).",
                        check=at_least(1))
    batch_size: int = field(64, "Labelled batch size.", check=at_least(1))
    px_batch_size: int = field(0, "Batch size of the p(x) stream for generative terms (0: batch_size).",
                               check=at_least(0))
    max_steps: Optional[int] = field(None, "Stop after this many iterations in all (absent: no limit).",
                                     check=lambda v: v is None or at_least(1)(v))
    log_every: int = field(10, "Copy metrics to the event log every this many steps (the only host "
                           "sync in the loop).", check=at_least(1))
    ckpt_every: int = field(0, "Keep checkpoints/epoch_<n>.pt every this many epochs (0: only "
                            "the last and the best).", check=at_least(0))
    control_every: int = field(20, "Look for requests in control/ every this many steps.",
                               check=at_least(1))
    ema: float = field(0.0, "Decay of an exponential moving average of the weights and BatchNorm "
                       "buffers, updated every step (0: off; DAT: 0.999). Saved in checkpoints and "
                       "used by evaluation, sampling and load_classifier unless --weights raw.",
                       check=in_range(0.0, 0.999999))


@attrs.frozen
class CollapseConfig:
    """[monitor.collapse]: detectors of a diverging EBM and what to do when one fires.

    Each detector's flag is computed on the device every step and read every `check_every`
    steps; a policy is 'warn' (an alarm event), 'stop' (checkpoint, end status "collapsed") or
    'rollback' (restore the last healthy checkpoint, optionally lower the lr and re-initialise
    the replay buffer, at most `max_rollbacks` times, then stop).
    """

    check_every: int = field(10, "Steps between reads of the detectors' device flags.", check=at_least(1))
    nonfinite: str = field("rollback", "Policy for a non-finite loss or energy.", check=one_of(*POLICIES))
    energy_limit: float = field(1e4, "Alarm when a population's mean |E| exceeds this.", check=positive)
    energy: str = field("rollback", "Policy for the energy-magnitude detector.", check=one_of(*POLICIES))
    loss_limit: float = field(1e5, "Alarm when |generative loss| exceeds this (the reference code's "
                              "divergence guard).", check=positive)
    loss: str = field("rollback", "Policy for the loss-magnitude detector.", check=one_of(*POLICIES))
    gap_limit: float = field(1e3, "Alarm when |mean E(clean) - mean E(generated)| exceeds this.",
                             check=positive)
    gap: str = field("warn", "Policy for the generated-gap detector.", check=one_of(*POLICIES))
    saturation_limit: float = field(0.9, "Alarm when this fraction of generated pixels sits at the clip "
                                    "bounds.", check=probability)
    saturation: str = field("warn", "Policy for the saturation detector.", check=one_of(*POLICIES))
    chance_margin: float = field(0.02, "Alarm when the window's training accuracy is below chance + "
                                 "this margin ...", check=probability)
    chance_after: int = field(200, "... once this many steps are done.", check=at_least(0))
    chance: str = field("warn", "Policy for the accuracy-at-chance detector.", check=one_of(*POLICIES))
    max_rollbacks: int = field(3, "Rollbacks allowed before a rollback policy stops the run.",
                               check=at_least(0))
    rollback_lr_factor: float = field(0.5, "Multiply the lr by this at each rollback.",
                                      check=in_range(0.0, 1.0))
    rollback_reinit_buffer: bool = field(True, "Re-initialise the replay buffer at each rollback.")


@attrs.frozen
class MonitorConfig:
    """[monitor]: energy statistics written as `energy` events, and collapse detection."""

    every: int = field(50, "Write energy statistics every this many steps (0: off).", check=at_least(0))
    bins: int = field(40, "Bins of the fixed-range energy histogram.", check=at_least(2))
    energy_range: list[float] = field(lambda: [-30.0, 10.0], "Range [lo, hi] of the energy histogram.",
                                      factory=True, check=all_of(length(2), increasing))
    samples_every: int = field(100, "Write a PNG grid of the iteration's generated samples (x_q, as drawn; "
                               "no extra sampling, the buffer is not touched) to samples/ every this "
                               "many steps (0: off; methods without a generator write none).",
                               check=at_least(0))
    probe_n: int = field(200, "Eval-mode energy probe written with every energy event: E(x) in eval mode "
                         "(BatchNorm running statistics, as `ebjdat eval`) of the first probe_n images "
                         "of `probe_split`, their PGD examples and probe_n generated samples (fixed "
                         "replay-buffer slots; DAT: its latest negatives). Costs about "
                         "probe_n * (3 * probe_attack_steps + 3) forward-equivalents per event, in "
                         "fp32, on rank 0 only (0: off).", check=at_least(0))
    probe_split: str = field("test", "Held-out images of the probe and of the generation trace's floor: "
                             "'test' (the first test images, exactly those `ebjdat eval --n probe_n` "
                             "measures, so the gaps agree with its report) or 'valid' (the validation "
                             "split, else test; keeps test images out of training, but its gaps differ "
                             "from `ebjdat eval`'s by the sampling noise between two image sets).",
                             check=one_of("test", "valid"))
    probe_attack_steps: int = field(20, "PGD steps of the probe's adversarial examples (eval.eps, step "
                                    "eps/4, random start, linf: `ebjdat eval`'s PGD-20 protocol at 20). "
                                    "Each step is one forward and backward of probe_n images.",
                                    check=at_least(1))
    gen_every: int = field(200, "Generation trace: fd_ref of the current generated samples every this many "
                           "steps and at the end, as `generation` events, beside the sampler's init "
                           "distribution (no-learning baseline) and held-out images (floor). Only for "
                           "datasets with fd_ref (digits, fashion-mnist) and methods that generate; the "
                           "reference classifier is trained on first use and cached (0: off).",
                           check=at_least(0))
    gen_n: int = field(500, "Generated samples of the generation trace (fixed replay-buffer slots; DAT: "
                       "its latest negatives), capped by the held-out images available; the baseline "
                       "and the floor use the same number.", check=at_least(2))
    collapse: CollapseConfig = field(CollapseConfig, "Collapse detectors and policies.", factory=True)


@attrs.frozen
class EvalConfig:
    """[eval]: evaluation during training."""

    every_epochs: int = field(1, "Clean accuracy on the validation (else test) split every this many "
                              "epochs, and at the end (0: only at the end).", check=at_least(0))
    n: int = field(0, "Points used by evaluation during training (0: the whole split).",
                   check=at_least(0))
    batch_size: int = field(256, "Batch size of evaluation.", check=at_least(1))
    robust_every: int = field(0, "Robust accuracy (PGD-20 and the AutoAttack subset `attacks`) on "
                              "`robust_n` validation (else test) points every this many epochs (0: off).",
                              check=at_least(0))
    robust_n: int = field(200, "Points of the robust evaluation during training.", check=at_least(1))
    attacks: str = field("apgd-ce", "AutoAttack attacks during training: 'standard' or a comma list "
                         "(apgd-ce, apgd-t, fab-t, square, apgd-dlr, fab).", check=_attacks_check)
    eps: Budget = field(Budget("8/255"), "Budget of evaluation attacks, pixel units of [0, 1] images.",
                        check=_budget_check)
    final: bool = field(False, "At the end of training, run the full `ebjdat eval` (standard "
                        "AutoAttack, PGD-20, energy landscape, fd_ref / FID) on the last checkpoint.")
    final_n: int = field(1000, "Test points of the final evaluation.", check=at_least(1))


@attrs.frozen
class RuntimeConfig:
    """[runtime]: device and numerics."""

    device: str = field("auto", "'auto' (cuda when present, else cpu), 'cpu', 'cuda' or 'cuda:N'.",
                        check=_device_check)
    amp: str = field("auto", "Autocast of the network: 'auto' (bf16 where the device computes bf16 "
                     "natively: a CUDA GPU with bf16, a CPU with AVX512-BF16/AMX; else off), 'bf16', "
                     "'fp16' (with a GradScaler) or 'off'. Explicit 'bf16' on a CPU without native "
                     "bf16 is honoured with a warning (emulated: 10-40x slower than fp32, WRN-28-10 ~39x).",
                     check=one_of("auto", "bf16", "fp16", "off"))
    compile: bool = field(False, "torch.compile the model.")
    channels_last: bool = field(False, "Use channels_last memory format (faster convolutions on GPUs).")
    threads: int = field(0, "torch CPU threads (0: torch's default).", check=at_least(0))
    deterministic: bool = field(False, "Ask torch for deterministic algorithms (slower on GPUs).")
    tensorboard: bool = field(False, "Mirror the run's events live into RUN/tensorboard (rank 0, from a "
                              "background thread; needs pip install 'ebjdat[tb]'). `ebjdat export RUN "
                              "--tensorboard DIR` writes the same after the fact.")


@attrs.frozen
class Recipe:
    """A whole recipe: every section, each with its defaults."""

    run: RunConfig = field(RunConfig, "Naming and seeding.", factory=True)
    data: DataConfig = field(DataConfig, "Dataset and augmentation.", factory=True)
    model: ModelConfig = field(ModelConfig, "The classifier.", factory=True)
    method: MethodConfig = field(MethodConfig, "Objective and loss weights.", factory=True)
    sampler: SamplerConfig = field(SamplerConfig, "Generative sampler and replay buffer.", factory=True)
    adversary: AdversaryConfig = field(AdversaryConfig, "Attack used in training.", factory=True)
    optim: OptimConfig = field(OptimConfig, "Optimiser and schedule.", factory=True)
    train: TrainConfig = field(TrainConfig, "Length, batches, cadence.", factory=True)
    monitor: MonitorConfig = field(MonitorConfig, "Energy statistics.", factory=True)
    eval: EvalConfig = field(EvalConfig, "Evaluation during training.", factory=True)
    runtime: RuntimeConfig = field(RuntimeConfig, "Device and numerics.", factory=True)


SECTIONS = tuple(a.name for a in attrs.fields(Recipe))
