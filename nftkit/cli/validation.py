"""Cheap checks that every command runs before anything expensive or visible starts.

Plugin names, presets, prompt sources, model paths or hub ids (and whether an offline hub id
is in the Hugging Face cache), output folders and devices are checked here, before progress
bars, downloads, model loads or database rows, so that a typo fails in a fraction of a second
with one line that says what to do. Nothing here writes a file or imports a model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nftkit.errors import MissingWeightsError, UsageError


def check_device(device: str) -> None:
    """A torch device string that this machine can use (cuda only when CUDA is available)."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(
            f"--device {device}: not a torch device; use cpu, cuda or cuda:N"
        ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = "torch was built without CUDA" if torch.version.cuda is None else "no GPU visible"
            raise UsageError(f"--device {device}: CUDA is not available ({why}); use --device cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise UsageError(f"--device {device}: only {count} CUDA device(s) here (cuda:0..)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {device}: MPS is not available here; use --device cpu")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {device}: unsupported device type; use cpu or cuda")


def check_reward_spec(spec: str) -> None:
    """A reward spec that parses and whose local rewards are all installed (nothing imported)."""
    from nftkit.compose import parse_reward_spec
    from nftkit.registry import REWARDS

    for term in parse_reward_spec(spec):
        if term.url is None:
            REWARDS.check_name(term.name)


def check_reward_names(names: Iterable[str]) -> None:
    """Every name is an installed reward."""
    from nftkit.registry import REWARDS

    for name in names:
        REWARDS.check_name(name)


def check_suite(name: str) -> None:
    """An installed evaluator (suite) name."""
    from nftkit.registry import EVALUATORS

    EVALUATORS.check_name(name)


def check_input_path(path: Path | None, flag: str, folder: bool | None = None) -> None:
    """``path`` exists (and is a folder / a file when ``folder`` says so)."""
    if path is None:
        return
    if not path.exists():
        raise UsageError(f"{flag} {path}: no such file or folder")
    if folder is True and not path.is_dir():
        raise UsageError(f"{flag} {path}: expected a folder, found a file")
    if folder is False and not path.is_file():
        raise UsageError(f"{flag} {path}: expected a file, found a folder")


def check_prompt_file(path: Path | None, flag: str = "--prompts") -> None:
    """A prompt file that exists and parses (.txt or .jsonl)."""
    if path is None:
        return
    check_input_path(path, flag, folder=False)
    from nftkit.prompt_files import read_prompt_records

    read_prompt_records(path)


def check_training_prompts(source: str) -> None:
    """A training prompt source that resolves: 'shapes-train', a named set or a file."""
    if not source:
        raise UsageError("no training prompts: give --prompts SOURCE or a --preset")
    from nftkit.train.presets import TRAINING_PROMPT_SETS, resolve_training_prompts

    if source == "shapes-train":
        return
    if source.startswith("shapes-train:"):
        try:
            resolve_training_prompts(source)
        except ValueError as exc:
            raise UsageError(f"--prompts {exc}") from exc
        return

    if source not in TRAINING_PROMPT_SETS and not Path(source).exists():
        raise UsageError(
            f"--prompts {source}: no such file, and not a named prompt set "
            f"(named: shapes-train, {', '.join(TRAINING_PROMPT_SETS)})"
        )
    resolve_training_prompts(source)


def check_output_folder(path: Path | None, flag: str = "--output") -> None:
    """``path`` is a folder, or can be created: its nearest existing parent is a writable folder."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: a file is in the way; choose a folder path")
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{flag} {path}: {probe} is a file, so the folder cannot be created")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: {probe} is not writable; choose another {flag}")


def check_model(model: str, base: str | None = None, family: str | None = None) -> None:
    """A model that can be loaded without a surprise: it exists, in a known layout, and an
    offline hub id is in the Hugging Face cache."""
    from nftkit.policies.loading import describe_model
    from nftkit.policies.sd3_loading import looks_like_hub_id
    from nftkit.policies.shapes import BUILTIN_MODELS, CONFIG_FILE, WEIGHTS_FILE

    info: dict[str, Any] = describe_model(model, base, family=family)
    path = Path(model)
    lora = info.get("lora") or info.get("full")
    if lora:  # an nftkit training output: its base, and its adapter (or full weights) file
        weights = path / str(lora.get("file", ""))
        if not weights.is_file():
            kind = "LoRA" if info.get("lora") else "full-parameter"
            raise MissingWeightsError(f"{kind} weights missing: expected {weights}")
        if str(info["base"]) != str(model):
            check_model(str(info["base"]))
        return
    if info.get("diffusers_lora"):
        check_model(str(base), family=family)
        return
    name = str(info.get("base", model))
    if info.get("family", "shapes") == "shapes":
        folder = BUILTIN_MODELS.get(name, Path(name))
        if not (folder / WEIGHTS_FILE).is_file():
            raise MissingWeightsError(
                f"no shapes model at {folder}: {CONFIG_FILE} is there but {WEIGHTS_FILE} is missing"
            )
        return
    if Path(name).is_dir():
        check_pipeline_folder(Path(name))
        return
    if looks_like_hub_id(name):
        check_hub_model_cached(name)


def check_pipeline_folder(folder: Path) -> None:
    """A diffusers pipeline folder whose model_index.json components are all present."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise MissingWeightsError(
            f"{folder} is not a diffusers folder: model_index.json naming the pipeline class "
            "(e.g. StableDiffusion3Pipeline, FluxPipeline) is expected"
        )
    try:
        entries = json.loads(index.read_text())
    except (ValueError, OSError) as exc:
        raise MissingWeightsError(f"{index} is not valid JSON ({exc})") from exc
    components = [
        k
        for k, v in entries.items()
        if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[0] is not None
    ]
    missing = [k for k in components if not (folder / k).is_dir()]
    if missing:
        raise MissingWeightsError(
            f"{folder} lacks the component folder(s) {', '.join(missing)} that model_index.json "
            "names; download the whole pipeline (e.g. huggingface-cli download REPO --local-dir DIR)"
        )


def check_hub_model_cached(repo_id: str) -> None:
    """A hub id that can be loaded: in the local cache, or (online) a repository on the hub.

    Offline (HF_HUB_OFFLINE) it must be cached. Online, an uncached id is looked up (metadata
    only, nothing downloaded): a repository that does not exist, or a hub that cannot be
    reached, fails now instead of after the prompt sets were fetched.
    """
    from huggingface_hub import try_to_load_from_cache

    from nftkit.rewards._sources import hub_offline

    cache = hub_cache()
    if isinstance(try_to_load_from_cache(repo_id, "model_index.json", cache_dir=cache), str):
        return
    provide = (
        f"run `huggingface-cli download {repo_id}` where the hub is reachable (or set "
        "HF_HOME / HF_HUB_CACHE to the cache that has it), or pass --model DIR with a "
        "diffusers folder (an offline test model: `nftkit debug make-tiny-sd3 DIR`)"
    )
    if hub_offline():
        raise MissingWeightsError(
            f"model '{repo_id}' is not in the Hugging Face cache {cache} "
            f"and HF_HUB_OFFLINE is set: {provide}"
        )
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        hub_model_info(repo_id)
    except GatedRepoError:
        return  # it exists; the loader explains the licence and login
    except RepositoryNotFoundError:
        raise MissingWeightsError(
            f"model '{repo_id}' is not in the Hugging Face cache {cache} and not on the hub (no "
            "such repository, or a private one: `huggingface-cli login`); check the id, or pass "
            "--model DIR with a diffusers folder"
        ) from None
    except Exception as exc:  # network: the weights could not be downloaded either
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:120]
        raise MissingWeightsError(
            f"model '{repo_id}' is not in the Hugging Face cache {cache} and the hub cannot be "
            f"reached ({reason}): {provide}"
        ) from None


def hub_model_info(repo_id: str) -> Any:
    """The hub's metadata of ``repo_id`` (one small request, 10 s timeout)."""
    from huggingface_hub import HfApi

    return HfApi().model_info(repo_id, timeout=10)


def hub_cache() -> str:
    """The Hugging Face hub cache as the environment names it now (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    from nftkit.rewards._sources import hub_cache_dir

    return hub_cache_dir()


def validate_train(spec: Any) -> None:
    """Everything `nftkit train` can check before it loads a model (a TrainSpec)."""
    from nftkit.train.stages import parse_stages

    check_device(spec.device)
    stages = parse_stages(spec.stages)
    pairs = [(s.rewards, s.prompts) for s in stages] or [(spec.rewards, spec.prompts)]
    for rewards, _ in pairs:
        check_reward_spec(rewards)
    check_model(spec.model, family=(getattr(spec, "policy_options", None) or {}).get("family"))
    for _, prompts in pairs:
        check_training_prompts(prompts)
    check_output_folder(Path(spec.output))


def check_policy_options(
    model: str, base: str | None, family: str | None, options: dict[str, Any]
) -> None:
    """Policy options (``--set policy.KEY=VALUE``) that the model's family accepts."""
    if not options:
        return
    from nftkit.config_values import closest_key
    from nftkit.policies.families import family_class
    from nftkit.policies.loading import describe_model, policy_option_names

    name = str(describe_model(model, base, family=family).get("family", "shapes"))
    for key in options:
        if key in ("device", "family"):
            raise UsageError(f"--set policy.{key}: give --{key} instead")
    valid = policy_option_names(family_class(name))
    if valid is None:
        return  # a family whose options cannot be listed: its loader checks them
    for key in options:
        if key not in valid:
            close = closest_key(key, valid)
            hint = f"did you mean '{close}'?" if close else f"valid: {', '.join(sorted(valid))}"
            raise UsageError(f"--set policy.{key}: the {name} policy has no option '{key}'; {hint}")


def validate_eval(
    suite: str,
    model: str | None,
    base: str | None,
    images: Path | None,
    prompts: Path | None,
    output: Path | None,
    device: str,
    family: str | None = None,
    policy_options: dict[str, Any] | None = None,
) -> None:
    """Everything `nftkit eval` can check before prompt downloads, model loads or db rows."""
    check_suite(suite)
    check_device(device)
    if images is not None:
        if policy_options:
            raise UsageError(
                "--set policy.KEY=VALUE sets how --model generates; drop it with --images"
            )
        check_input_path(images, "--images")
    elif model is not None:
        check_model(model, base, family)
        check_policy_options(model, base, family, policy_options or {})
    check_input_path(prompts, "--prompts", folder=False)
    check_output_folder(output)


def validate_score(rewards: str, images: Path, prompts: Path | None, device: str) -> None:
    """Everything `nftkit score` can check before reward models load."""
    check_reward_spec(rewards)
    check_device(device)
    check_input_path(images, "--images", folder=True)
    check_input_path(prompts, "--prompts", folder=False)
