"""A signed C2PA manifest inside the MP4 (c2pa-python, the Content Authenticity Initiative's library), and
reading one back for ``python -m latentsync_demo.verify``.

``embed`` signs the finished file (after the container tags: the manifest's hash covers them) with a
``C2paSigning`` (provenance/signing.py). The inputs become ingredients: read from the file where c2pa knows the
format (then a C2PA manifest an input already carries is kept in the chain), described only by name otherwise.
``read`` reports presence, signer, validation state and whether the claim says AI-generated.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from .signing import TEST_ORGANIZATION, C2paSigning

log = logging.getLogger(__name__)

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# Digital source types that say "made or changed by a generative model" (IPTC vocabulary, as C2PA uses it).
AI_SOURCE_TYPES = {IPTC + name for name in ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia",
                                            "algorithmicMedia", "compositeSynthetic")}
VIDEO_MP4 = "video/mp4"
# No network while signing or reading: no remote manifests, no OCSP; no thumbnails in a video's manifest.
_SETTINGS = {"builder": {"thumbnail": {"enabled": False}},
             "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}


def available() -> bool:
    """Whether c2pa-python (and its native library) can be imported here."""
    try:
        import c2pa  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


@dataclass(frozen=True)
class Ingredient:
    """One input of the output: ``label`` (e.g. "video"), the file, its C2PA relationship (parentOf /
    componentOf / inputTo)."""

    label: str
    path: Path
    relationship: str


def embed(out: str | os.PathLike, definition: dict, ingredients: list[Ingredient], signing: C2paSigning) -> dict:
    """Sign ``definition`` (a C2PA manifest definition) into the MP4 ``out`` in place; returns the signer's names.

    A ``parentOf`` ingredient makes the claim an edit (c2pa adds the ``c2pa.opened`` action for it); without one
    it is a creation (the definition's first action must then be ``c2pa.created``). Should c2pa fail to read an
    input it knows by extension (a damaged or mislabelled file), the inputs are described by name instead.
    """
    import c2pa

    out = Path(out)
    supported = set(c2pa.Builder.get_supported_mime_types())
    readable = [i for i in ingredients if i.path.suffix.lower().lstrip(".") in supported]
    try:
        _sign(out, definition, ingredients, readable, signing)
    except c2pa.C2paError as exc:
        if not readable:
            raise
        log.warning("C2PA: could not read an input as an ingredient (%s); describing the inputs by name", exc)
        _sign(out, definition, ingredients, [], signing)
    return signer_names(signing)


def _sign(out: Path, definition: dict, ingredients: list[Ingredient], readable: list[Ingredient],
          signing: C2paSigning) -> None:
    """One signing pass: ``readable`` ingredients are read from their files, the others described by name."""
    import c2pa

    definition = dict(definition, ingredients=[*definition.get("ingredients", []),
                                               *(_described(i) for i in ingredients if i not in readable)])
    staged = out.with_name(f".{out.name}.c2pa-signing")
    info = c2pa.C2paSignerInfo(signing.alg, signing.cert_chain, signing.private_key, signing.tsa_url)
    try:
        with c2pa.Context.from_dict(_SETTINGS) as context, c2pa.Signer.from_info(info) as signer, \
                c2pa.Builder(definition, context) as builder:
            if any(i.relationship == "parentOf" for i in ingredients):
                builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
            for ingredient in readable:
                with open(ingredient.path, "rb") as source:
                    builder.add_ingredient(_described(ingredient), ingredient.path.suffix.lstrip(".").lower(),
                                           source)
            with open(out, "rb") as source, open(staged, "w+b") as dest:
                builder.sign(signer, VIDEO_MP4, source, dest)
        os.replace(staged, out)
    finally:
        staged.unlink(missing_ok=True)


def signer_names(signing: C2paSigning) -> dict:
    """Who signs (the end-entity certificate's common name and organisation) and whether it is a test chain."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    subject = x509.load_pem_x509_certificates(signing.cert_chain)[0].subject

    def first(oid) -> str | None:
        values = subject.get_attributes_for_oid(oid)
        return str(values[0].value) if values else None

    return {"signer": first(NameOID.COMMON_NAME), "organization": first(NameOID.ORGANIZATION_NAME),
            "alg": signing.alg, "test_certificate": signing.test}


def _described(ingredient: Ingredient) -> dict:
    return {"title": ingredient.path.name, "relationship": ingredient.relationship, "label": ingredient.label}


@dataclass
class C2paReport:
    """What ``read`` found. ``state``: c2pa's validation state (Trusted: signature and hashes valid and the signer
    chains to a trust anchor; Valid: signature and hashes valid, signer not on a trust list; Invalid: the file or
    the manifest was changed after signing, or the signature is bad). ``failures``: the validation codes that
    failed (e.g. ``assertion.bmffHash.mismatch`` for an edited file, ``signingCredential.untrusted``)."""

    present: bool
    state: str | None = None
    signer: str | None = None
    issuer: str | None = None
    test_certificate: bool = False
    ai_generated: bool = False
    actions: list[dict] = field(default_factory=list)
    ingredients: list[dict] = field(default_factory=list)  # title, format, relationship of each input
    failures: list[str] = field(default_factory=list)
    assertions: dict[str, dict] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "assertions"}


def read(path: str | os.PathLike, trust_anchors: bytes | None = None) -> C2paReport:
    """The embedded manifest of ``path``, validated (``trust_anchors``: PEM roots whose chains count as trusted).

    Never raises for a file without a manifest or a damaged one: ``present`` False or ``error`` set instead.
    """
    if not available():
        return C2paReport(present=False, error="c2pa-python is not installed (pip install c2pa-python)")
    import c2pa

    try:
        with open(path, "rb") as stream:
            if stream.read(8)[4:] != b"ftyp":  # MKV, WebM, ...: no place for a manifest we embed
                return C2paReport(present=False, error="not an MP4/MOV file (manifests are read from ISO BMFF)")
    except OSError as exc:
        return C2paReport(present=False, error=str(exc))
    settings = dict(_SETTINGS)
    if trust_anchors:
        settings["trust"] = {"user_anchors": trust_anchors.decode()}
    try:
        with c2pa.Context.from_dict(settings) as context, open(path, "rb") as stream:
            with c2pa.Reader(VIDEO_MP4, stream, context=context) as reader:
                store = json.loads(reader.json())
                state = reader.get_validation_state()
                results = reader.get_validation_results() or {}
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "no JUMBF" in str(exc):
            return C2paReport(present=False)
        return C2paReport(present=True, state="Invalid", error=str(exc))  # e.g. a damaged manifest box
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    assertions = {a.get("label"): a.get("data", {}) for a in manifest.get("assertions", [])}
    actions = next((data.get("actions", []) for label, data in assertions.items()
                    if label and label.startswith("c2pa.actions")), [])
    signature = manifest.get("signature_info", {})
    failures = [f.get("code") for f in (results.get("activeManifest") or {}).get("failure", [])]
    failures += [f.get("code") for f in store.get("validation_status", []) or [] if f.get("code") not in failures]
    return C2paReport(
        present=True, state=state, signer=signature.get("common_name"), issuer=signature.get("issuer"),
        test_certificate=signature.get("issuer") == TEST_ORGANIZATION,
        ai_generated=any(a.get("digitalSourceType") in AI_SOURCE_TYPES for a in actions),
        actions=actions, failures=failures, assertions=assertions,
        ingredients=[{key: i.get(key) for key in ("title", "format", "relationship")}
                     for i in manifest.get("ingredients", [])])
