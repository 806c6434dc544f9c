"""Model store: presets, where each weight file of a model set lives, and what is missing (with the command that
fetches it). Downloading is ``download``'s job, loading the networks ``loading``'s.

A checkpoint folder has the official LatentSync release layout::

    <dir>/latentsync_unet.pt          {"state_dict": ..., "global_step": ...}
    <dir>/whisper/tiny.pt             OpenAI whisper checkpoint format
    <dir>/sd-vae-ft-mse/              diffusers AutoencoderKL folder
    <dir>/unet_config.json            optional: {"model": {...}, "data": {"resolution": R}} or a bare model dict
    <dir>/lcm/                        optional LCM student for the "lcm" sampler: latentsync_unet.pt (full) or a
                                      peft LoRA (adapter_config.json + adapter_model.safetensors); see models/lcm.py
    <dir>/improvements.json           optional: a checkpoint trained with research improvements (training/
                                      train_unet.py; models/improvements.py), with audio_fusion/ and wav2vec2/
                                      for phoneme-aware audio

The default root ``checkpoints/`` keeps one such folder per preset (``checkpoints/latentsync-1.5/``) and
the shared VAE at ``checkpoints/sd-vae-ft-mse/``. A folder that itself holds
``latentsync_unet.pt`` (a "flat" set) is one model set: it serves the preset of its resolution (256 px, i.e.
LatentSync 1.5, when it has no ``unet_config.json``), while the other preset keeps its own subfolder; a set whose
``unet_config.json`` names a resolution no preset has (test and fine-tuned sets) serves every preset.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError
from .face.types import InsightFaceFiles
from .hub import missing_files_error
from .models.configs import STAGE2_UNET_CONFIG
from .models.improvements import Improvements, wav2vec_folder
from .models.lcm import LCM_UNET_FILE, LORA_CONFIG_FILE, LORA_WEIGHTS_FILE, lcm_format

UNET_FILE = "latentsync_unet.pt"
WHISPER_FILE = "whisper/tiny.pt"
VAE_DIR = "sd-vae-ft-mse"
UNET_CONFIG_FILE = "unet_config.json"
VAE_REPO = "stabilityai/sd-vae-ft-mse"
VAE_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
LCM_DIR = "lcm"
# Hugging Face repo of a distilled LCM student (the lcm/ folder's files at its root). There is no public
# LatentSync LCM student, so None; set $LATENTSYNC_LCM_REPO once you have published one.
LCM_REPO_ID: str | None = None
# The official face pass (insightface buffalo_l: SCRFD detector + 106-point landmarks) reads these two files
# from <root>/auxiliary/models/buffalo_l/ (the official FaceAnalysis root is checkpoints/auxiliary). The
# official code lets insightface fetch the whole 280 MB buffalo_l.zip from its GitHub release; we fetch only the
# two files inference needs, from a Hugging Face repo that hosts that pack's files one by one.
AUXILIARY_DIR = "auxiliary"
INSIGHTFACE_DIR = "auxiliary/models/buffalo_l"
INSIGHTFACE_REPO = "KwaiVGI/LivePortrait"
INSIGHTFACE_FILES = {  # file in INSIGHTFACE_DIR -> its path in INSIGHTFACE_REPO
    "det_10g.onnx": "insightface/models/buffalo_l/det_10g.onnx",
    "2d106det.onnx": "insightface/models/buffalo_l/2d106det.onnx",
}


def lcm_repo_id() -> str | None:
    """``$LATENTSYNC_LCM_REPO`` or ``LCM_REPO_ID`` (None: no known download)."""
    return os.environ.get("LATENTSYNC_LCM_REPO") or LCM_REPO_ID


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    resolution: int
    repo_id: str  # Hugging Face repo holding latentsync_unet.pt and whisper/tiny.pt


PRESETS = {
    "latentsync-1.5": Preset("latentsync-1.5", "LatentSync 1.5 · 256 px", 256, "ByteDance/LatentSync-1.5"),
    "latentsync-1.6": Preset("latentsync-1.6", "LatentSync 1.6 · 512 px", 512, "ByteDance/LatentSync-1.6"),
}
DEFAULT_PRESET = "latentsync-1.5"


def default_root() -> Path:
    """``$LATENTSYNC_CHECKPOINTS`` or ``./checkpoints``."""
    return Path(os.environ.get("LATENTSYNC_CHECKPOINTS", "checkpoints"))


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class CheckpointSet:
    """Resolved paths of one complete model set (files may still be missing: see ``missing()``)."""

    preset: Preset
    folder: Path
    unet: Path
    whisper: Path
    vae: Path
    unet_config: dict
    resolution: int
    root: Path | None = None  # the --checkpoints folder (shared files such as auxiliary/ live there)
    note: str = ""  # why the preset's own folder is used although the root holds a (different) flat set

    def missing(self) -> list[Path]:
        missing = [p for p in (self.unet, self.whisper, self.vae / "config.json") if not p.is_file()]
        if not any(self.vae.glob("diffusion_pytorch_model.*")):  # .safetensors or .bin
            missing.append(self.vae / "diffusion_pytorch_model.safetensors")
        wav2vec = self.wav2vec_config()
        if wav2vec is not None and not wav2vec.is_file():
            missing.append(wav2vec)
        return missing

    def wav2vec_config(self) -> Path | None:
        """``<folder>/wav2vec2/config.json`` when this set is phoneme-aware and its Wav2Vec2 is not a local folder
        (``download`` fetches it there); None otherwise."""
        improvements = Improvements.load(self.folder)
        if not improvements.phoneme_audio or Path(improvements.wav2vec_model).is_dir():
            return None
        return wav2vec_folder(self.folder) / "config.json"

    def require(self) -> None:
        """Raise a CheckpointError naming every missing file, where we looked, and how to fetch them."""
        missing = self.missing()
        self._require(f"model files for {self.preset.label} are missing", missing,
                      "or point --checkpoints (or $LATENTSYNC_CHECKPOINTS) at a folder that has them.",
                      web=f"The model weights for {self.preset.label} are not on this server yet "
                          f"({', '.join(p.name for p in missing)}). Press “Download model weights” above (a few "
                          "GB), or ask the host to add them.")

    def _require(self, what: str, missing: list[Path], otherwise: str, web: str | None = None) -> None:
        if missing:
            raise missing_files_error(what, missing, self.download_command, otherwise, note=self.note, web=web)

    @property
    def download_command(self) -> str:
        """The command that fetches this set's missing files."""
        return f"python -m latentsync_demo.download --preset {self.preset.name} --checkpoints {self._root_hint()}"

    @property
    def lcm(self) -> Path:
        """Folder of the LCM student (``<folder>/lcm``)."""
        return self.folder / LCM_DIR

    def has_lcm(self) -> bool:
        return lcm_format(self.lcm) is not None

    def require_lcm(self) -> None:
        """Raise a CheckpointError saying where the LCM student was looked for and how to get one."""
        if self.has_lcm():
            return
        repo = lcm_repo_id()
        source = (f"Download it from the Hugging Face repo {repo} into {self.lcm}" if repo else
                  "No public LatentSync LCM student exists (LCM_REPO_ID is None; set $LATENTSYNC_LCM_REPO to a repo "
                  "that has one)")
        raise CheckpointError(
            f"the LCM sampler needs a distilled student for {self.preset.label}, but {self.lcm} has neither\n"
            f"  {self.lcm / LCM_UNET_FILE}  (full student) nor\n"
            f"  {self.lcm / LORA_CONFIG_FILE} + {LORA_WEIGHTS_FILE}  (LoRA).\n"
            f"{source}, or distil one: accelerate launch -m latentsync_demo.training.lcm_distill --help. "
            "Or use the ddim sampler.",
            web=f"The fast LCM sampler needs a distilled model that {self.preset.label} does not have on this server: "
                "choose the DDIM sampler.",
        )

    @property
    def insightface_dir(self) -> Path:
        """``<root>/auxiliary/models/buffalo_l``: the official layout, shared by all presets."""
        return (self.root if self.root is not None else self.folder) / INSIGHTFACE_DIR

    def insightface_files(self) -> InsightFaceFiles:
        """The detector and 106-point landmark ONNX files; their ``require()`` names this set's download command."""
        return InsightFaceFiles(self.insightface_dir / "det_10g.onnx", self.insightface_dir / "2d106det.onnx",
                                self.download_command)

    def _root_hint(self) -> str:
        return str(self.folder.parent if self.folder.name == self.preset.name else self.folder)


def resolve(preset: str = DEFAULT_PRESET, root: str | Path | None = None) -> CheckpointSet:
    """Where the files of ``preset`` are (or will be, once downloaded) under ``root``."""
    spec = get_preset(preset)
    root = Path(root) if root is not None else default_root()
    flat = (root / UNET_FILE).is_file() or (root / UNET_CONFIG_FILE).is_file()
    note = ""
    if flat:  # one model set directly in root: it belongs to the preset of its resolution (256 px without config)
        _, flat_resolution = _read_unet_config(root / UNET_CONFIG_FILE, PRESETS[DEFAULT_PRESET].resolution)
        owner = next((p for p in PRESETS.values() if p.resolution == flat_resolution), None)
        if owner is not None and owner.name != spec.name:  # never serve 1.5's files as 1.6 (or back)
            flat = False
            note = (f"({root} itself holds a {flat_resolution} px set, used for {owner.label}; "
                    f"{spec.label} needs its own files in {root / spec.name}, see checkpoints/README.md.)\n")
    folder = root if flat else root / spec.name
    vae = folder / VAE_DIR if (folder / VAE_DIR).is_dir() or flat else root / VAE_DIR
    model_config, resolution = _read_unet_config(folder / UNET_CONFIG_FILE, spec.resolution)
    return CheckpointSet(spec, folder, folder / UNET_FILE, folder / WHISPER_FILE, vae, model_config, resolution,
                         root, note)


def _read_unet_config(path: Path, default_resolution: int) -> tuple[dict, int]:
    if not path.is_file():
        return dict(STAGE2_UNET_CONFIG), default_resolution
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read UNet config {path}: {exc}") from exc
    model = data.get("model", data)
    resolution = int(data.get("data", {}).get("resolution", default_resolution))
    return model, resolution


def write_unet_config(folder: str | Path, model_config: dict, resolution: int) -> Path:
    """Write ``unet_config.json`` in the official yaml's shape: {"model": ..., "data": {"resolution": R}}."""
    path = Path(folder) / UNET_CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": model_config, "data": {"resolution": resolution}}, indent=1))
    return path
