"""Provenance of every output: container metadata in the MP4 and a C2PA-style JSON manifest beside it.

The sidecar ``<output>.c2pa.json`` follows the C2PA manifest layout (claim generator, assertions with the
``c2pa.actions`` action ``c2pa.created`` and IPTC digital source type ``trainedAlgorithmicMedia``, ingredient
and output hashes), unsigned. ``read_metadata`` reads the tags back with ffmpeg (no ffprobe needed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..media.ffmpeg import ffmpeg_exe, fs_path
from ..media.mux import set_metadata

TOOL = "latentsync_demo"
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SIDECAR_SUFFIX = ".c2pa.json"


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(out: str | os.PathLike) -> Path:
    return Path(out).with_name(Path(out).name + SIDECAR_SUFFIX)


def container_tags(job_id: str, preset: str, settings, watermark: str | None) -> dict[str, str]:
    """The MP4 tags: readable by people ("comment") and by machines (one key per fact)."""
    fields = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings or {})
    return {
        "comment": f"AI-generated: lip-synced by {TOOL} {__version__} (LatentSync, preset {preset}).",
        "ai_generated": "true",
        "digital_source_type": DIGITAL_SOURCE_TYPE,
        "generator": f"{TOOL} {__version__}",
        "model_preset": preset,
        "sampler": str(fields.get("sampler", "")),
        "settings": json.dumps(fields, sort_keys=True, default=str),
        "job_id": job_id,
        "watermark": watermark or "none",
    }


def build_manifest(out: Path, inputs: dict[str, Path | None], tags: dict[str, str]) -> dict:
    """C2PA-style manifest (JSON) for the finished output ``out``."""
    ingredients = [
        {"title": path.name, "relationship": "inputTo" if role == "audio" else "parentOf", "role": role,
         "hash": {"alg": "sha256", "value": sha256(path)}}
        for role, path in inputs.items() if path is not None
    ]
    return {
        "claim_generator": tags["generator"],
        "claim_generator_info": [{"name": TOOL, "version": __version__}],
        "title": out.name,
        "format": "video/mp4",
        "instance_id": f"xmp:iid:{tags['job_id']}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{
                "action": "c2pa.created",
                "digitalSourceType": DIGITAL_SOURCE_TYPE,
                "softwareAgent": tags["generator"],
                "description": "AI generated: the lower face was re-generated to lip-sync new speech",
                "parameters": {"model_preset": tags["model_preset"], "sampler": tags["sampler"],
                               "settings": json.loads(tags["settings"])},
            }]}},
            {"label": "c2pa.ai_generated", "data": {"ai_generated": True, "watermark": tags["watermark"]}},
        ],
        "ingredients": ingredients,
        "output": {"hash": {"alg": "sha256", "value": sha256(out)}},
        "signature": None,  # unsigned sidecar; see README "Responsible use"
    }


def stamp(out: str | os.PathLike, inputs: dict[str, Path | None], tags: dict[str, str]) -> Path:
    """Tag ``out`` in place, then write its sidecar manifest (hash of the final bytes); returns the sidecar."""
    out = Path(out)
    set_metadata(out, tags)
    sidecar = sidecar_path(out)
    sidecar.write_text(json.dumps(build_manifest(out, inputs, tags), indent=2))
    return sidecar


_TAG = re.compile(r"^\s{4}(\w+)\s*:\s?(.*)$")


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The container-level tags of a media file (from ``ffmpeg -i``'s summary)."""
    text = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", fs_path(path)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False).stderr
    tags: dict[str, str] = {}
    in_block = False
    for line in text.decode("utf-8", "replace").splitlines():
        if line.startswith("  Metadata:"):
            in_block = True
            continue
        if in_block:
            m = _TAG.match(line)
            if not m:
                break
            tags[m[1]] = m[2]
    return tags
