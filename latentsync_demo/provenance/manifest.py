"""Provenance of every output: container metadata in the MP4, a signed C2PA manifest inside it when the host
configured signing, and a C2PA-style JSON manifest beside it.

The sidecar ``<output>.c2pa.json`` follows the C2PA manifest layout (claim generator, assertions with the
``c2pa.actions`` action ``c2pa.edited`` and IPTC digital source type ``trainedAlgorithmicMedia``, ingredient
and output hashes), unsigned. It is written always, also next to an embedded manifest: it is readable without C2PA
tools, and its ``signature`` field says whether (and by whom) the MP4 itself was signed. The embedded manifest
(provenance/c2pa_embed.py) carries the same action and a ``latentsync_demo.generation`` assertion with the job,
settings and input hashes. ``read_metadata`` reads the tags back with ffmpeg (no ffprobe needed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..media.ffmpeg import ffmpeg_exe, fs_path
from . import c2pa_embed
from .signing import C2paSigning

TOOL = "latentsync_demo"
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SIDECAR_SUFFIX = ".c2pa.json"
log = logging.getLogger(__name__)


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(out: str | os.PathLike) -> Path:
    return Path(out).with_name(Path(out).name + SIDECAR_SUFFIX)


def container_tags(job_id: str, preset: str, settings, watermark: str | None, voice: str = "off",
                   subtitles: str = "off", subtitle_language: str | None = None,
                   translation: tuple[str, str] | None = None) -> dict[str, str]:
    """The MP4 tags: readable by people ("comment") and by machines (one key per fact). ``voice``: the voice
    request's mode; when not "off" the speech itself was synthesized (tag ``voice``). ``subtitles``: "soft" (a
    subtitle track) or "burned" (drawn into the frames), in ``subtitle_language`` (ISO 639-2); "off": none.
    ``translation``: (from, into) language codes when the speech was translated (the translate voice mode)."""
    fields = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings or {})
    tags = {
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
    if voice != "off":
        tags["voice"] = voice
        tags["comment"] += " The speech was synthesized in the speaker's voice (voice cloning)."
    if translation is not None:
        tags["translation"] = f"{translation[0] or 'und'}->{translation[1]}"
        tags["comment"] += (f" It was machine-translated from {translation[0] or 'an unstated language'} into "
                            f"{translation[1]}.")
    if subtitles != "off":
        tags["subtitles"] = subtitles
        tags["subtitle_language"] = subtitle_language or "und"
    return tags


# C2PA relationship of each input to the output: the edited video, the speech that drove it, and (for the
# side-by-side video) the lip-synced result shown beside the original.
RELATIONSHIPS = {"video": "parentOf", "audio": "inputTo", "result": "componentOf", "soundtrack": "componentOf",
                 "subtitles": "componentOf"}
GENERATION_LABEL = "latentsync_demo.generation"


def side_by_side_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags of the original | result video: the output's, saying what the picture shows."""
    return dict(tags, comment=tags["comment"] + " Side by side: original (left) | lip-synced result (right).",
                layout="original | result")


def _action(tags: dict[str, str], inputs: dict[str, Path]) -> dict:
    """The C2PA action: the input video edited by a trained model (created, when there is no input video)."""
    description = "AI generated: the lower face was re-generated to lip-sync new speech"
    parameters = {"model_preset": tags["model_preset"], "sampler": tags["sampler"],
                  "settings": json.loads(tags["settings"])}
    if "voice" in tags:
        description += "; the speech was synthesized in the speaker's voice (voice cloning)"
        parameters["voice"] = tags["voice"]
    if "translation" in tags:
        description += f"; the speech was machine-translated ({tags['translation']})"
        parameters["translation"] = tags["translation"]
    if "subtitles" in tags:
        description += ("; subtitles burned into the frames" if tags["subtitles"] == "burned"
                        else "; with a soft subtitle track")
        parameters["subtitles"] = _subtitle_facts(tags)
    if "result" in inputs:
        description += "; shown side by side with the original"
    return {"action": "c2pa.edited" if "video" in inputs else "c2pa.created",
            "digitalSourceType": DIGITAL_SOURCE_TYPE, "softwareAgent": tags["generator"],
            "description": description, "parameters": parameters}


def build_manifest(out: Path, inputs: dict[str, Path | None], tags: dict[str, str],
                   hashes: dict[str, str] | None = None, signature: dict | None = None) -> dict:
    """C2PA-style manifest (JSON) for the finished output ``out``. ``hashes``: role -> sha256 of the inputs
    (computed when not given); ``signature``: what ``stamp`` embedded (None: no signed manifest in the file)."""
    inputs = {role: path for role, path in inputs.items() if path is not None}
    hashes = hashes or input_hashes(inputs)
    ingredients = [
        {"title": path.name, "relationship": RELATIONSHIPS.get(role, "parentOf"), "role": role,
         "hash": {"alg": "sha256", "value": hashes[role]}}
        for role, path in inputs.items()
    ]
    return {
        "claim_generator": tags["generator"],
        "claim_generator_info": [{"name": TOOL, "version": __version__}],
        "title": out.name,
        "format": "video/mp4",
        "instance_id": f"xmp:iid:{tags['job_id']}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [_action(tags, inputs)]}},
            {"label": "c2pa.ai_generated", "data": {"ai_generated": True, "watermark": tags["watermark"]}},
        ],
        "ingredients": ingredients,
        "output": {"hash": {"alg": "sha256", "value": sha256(out)}},
        # None: unsigned sidecar only; else {"embedded": "c2pa", "signer": ...}; see README "Responsible use"
        "signature": signature,
    }


def c2pa_definition(out: Path, inputs: dict[str, Path], tags: dict[str, str], hashes: dict[str, str],
                    test_certificate: bool) -> dict:
    """The manifest definition c2pa signs into ``out``: the same action as the sidecar, plus the job's facts."""
    action = dict(_action(tags, inputs), softwareAgent={"name": TOOL, "version": __version__})
    if "video" in inputs:
        action["parameters"] = dict(action["parameters"], ingredientIds=["video"])
    generation = {
        "ai_generated": True, "generator": tags["generator"], "job_id": tags["job_id"],
        "watermark": tags["watermark"], "model_preset": tags["model_preset"], "sampler": tags["sampler"],
        "settings": json.loads(tags["settings"]),
        "inputs": {role: {"title": path.name, "sha256": hashes[role]} for role, path in inputs.items()},
    }
    if "voice" in tags:
        generation["voice"] = tags["voice"]
    if "translation" in tags:
        generation["translation"] = tags["translation"]
    if "subtitles" in tags:
        generation["subtitles"] = _subtitle_facts(tags)
    if test_certificate:
        generation["signing"] = "UNTRUSTED TEST SIGNING: a throwaway certificate made by latentsync_demo"
    return {
        "claim_generator_info": [{"name": TOOL, "version": __version__}],
        "title": out.name,
        "format": "video/mp4",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}},
                       {"label": GENERATION_LABEL, "data": generation}],
    }


def _subtitle_facts(tags: dict[str, str]) -> dict:
    """How the output carries its subtitles: burned into the frames or as a soft track, and their language."""
    return {"burned": tags["subtitles"] == "burned", "language": tags.get("subtitle_language", "und")}


def input_hashes(inputs: dict[str, Path | None]) -> dict[str, str]:
    """role -> sha256 of each given input file."""
    return {role: sha256(path) for role, path in inputs.items() if path is not None}


def stamp(out: str | os.PathLike, inputs: dict[str, Path | None], tags: dict[str, str],
          signing: C2paSigning | None = None, hashes: dict[str, str] | None = None) -> Path:
    """Sign a C2PA manifest into ``out`` (``signing`` set and c2pa installed: the one rewrite of the file after its
    mux, which already wrote the container ``tags``), then write its sidecar manifest (hash of the final bytes);
    returns the sidecar. ``hashes``: the inputs' sha256 already
    known (``input_hashes``; a job stamps its result and its side-by-side video from the same uploads), the
    others are computed.

    A signing failure does not lose the finished video: it is logged and recorded in the sidecar's
    ``signature`` (the tags, the sidecar and the watermark still mark it)."""
    out = Path(out)
    inputs = {role: Path(path) for role, path in inputs.items() if path is not None}
    known = hashes or {}
    hashes = {role: known[role] if role in known else sha256(path) for role, path in inputs.items()}
    signature = None
    if signing is not None:
        if not c2pa_embed.available():
            signature = {"embedded": None, "error": "c2pa-python is not installed: sidecar only"}
        else:
            try:
                ingredients = [c2pa_embed.Ingredient(role, path, RELATIONSHIPS.get(role, "parentOf"))
                               for role, path in inputs.items()]
                definition = c2pa_definition(out, inputs, tags, hashes, signing.test)
                signature = {"embedded": "c2pa", **c2pa_embed.embed(out, definition, ingredients, signing)}
            except Exception as exc:  # c2pa's native errors vary; the output must survive them
                log.error("C2PA signing of %s failed: %s", out.name, exc)
                signature = {"embedded": None, "error": f"C2PA signing failed: {exc}"}
    sidecar = sidecar_path(out)
    sidecar.write_text(json.dumps(build_manifest(out, inputs, tags, hashes, signature), indent=2))
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
