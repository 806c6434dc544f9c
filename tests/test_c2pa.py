"""A signed C2PA manifest inside every output (c2pa-python): what it claims, that it validates, that an edit to
the file breaks it, the side-by-side video's provenance, and the sidecar-only fallback.

Certificates are made in the tests (a run-time test chain, and a "host" CA + signer standing in for a bought
certificate); none is stored in the repository.
"""

import argparse
import datetime
import json
import shutil

import pytest

from latentsync_demo import cli, verify
from latentsync_demo.media.mux import set_metadata
from latentsync_demo.settings import GenerationSettings
from latentsync_demo.provenance import c2pa_embed
from latentsync_demo.provenance.manifest import (
    DIGITAL_SOURCE_TYPE, GENERATION_LABEL, container_tags, read_metadata, sha256, sidecar_path, stamp,
)
from latentsync_demo.provenance.signing import C2paSigning, SigningConfigError, resolve_signing, signing_from_env
from latentsync_demo.testing.media import make_speech_wav, make_talking_head_clip

UNTRUSTED = "signingCredential.untrusted"


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_checkpoints):
    """One service job on tiny checkpoints, signed with a test certificate, with the side-by-side video."""
    from latentsync_demo.service import LipSyncService

    root = tmp_path_factory.mktemp("c2pa")
    video = make_talking_head_clip(root / "face.mp4", seconds=1.2, fps=25, size=(256, 256))
    audio = make_speech_wav(root / "speech.wav", seconds=1.2)
    out, compare = root / "out.mp4", root / "out_side_by_side.mp4"
    signing = C2paSigning.test_certificate()
    service = LipSyncService(tiny_checkpoints, device="cpu", c2pa=signing)
    events = list(service.lipsync(video, audio, out, num_inference_steps=1, compare=compare, consent=True))
    assert events[-1].stage == "done" and events[-1].compare == compare
    return {"video": video, "audio": audio, "out": out, "compare": compare, "root": root, "signing": signing,
            "tags": read_metadata(out)}


def test_output_carries_a_signed_manifest_saying_ai_edited_with_job_facts(job):
    found = c2pa_embed.read(job["out"])
    assert found.present and found.state == "Valid" and found.failures == [UNTRUSTED]  # intact, signer unknown
    assert found.test_certificate and "untrusted" in found.signer and found.ai_generated
    edited = next(a for a in found.actions if a["action"] == "c2pa.edited")
    assert edited["digitalSourceType"] == DIGITAL_SOURCE_TYPE and edited["softwareAgent"]["name"] == "latentsync_demo"
    assert edited["parameters"]["model_preset"] == "latentsync-1.5" and edited["parameters"]["sampler"] == "ddim"
    assert found.actions[0]["action"] == "c2pa.opened"  # the edit intent opens the parent video first
    facts = found.assertions[GENERATION_LABEL]
    assert facts["job_id"] == job["tags"]["job_id"] and facts["watermark"] == job["tags"]["watermark"]
    assert facts["settings"]["num_inference_steps"] == 1 and facts["ai_generated"] is True
    assert "UNTRUSTED TEST SIGNING" in facts["signing"]
    assert {role: i["sha256"] for role, i in facts["inputs"].items()} == {
        "video": sha256(job["video"]), "audio": sha256(job["audio"])}
    assert {(i["title"], i["relationship"]) for i in found.ingredients} == {
        ("face.mp4", "parentOf"), ("speech.wav", "inputTo")}


def test_test_chain_validates_as_trusted_only_against_its_own_root(job):
    assert c2pa_embed.read(job["out"], job["signing"].trust_anchor).state == "Trusted"
    other = C2paSigning.test_certificate()
    assert c2pa_embed.read(job["out"], other.trust_anchor).state == "Valid"  # another root: still untrusted


def test_tags_and_sidecar_describe_the_signed_bytes(job):
    tags = job["tags"]  # written before signing and covered by the manifest's hash
    assert tags["ai_generated"] == "true" and tags["sampler"] == "ddim"
    sidecar = json.loads(sidecar_path(job["out"]).read_text())
    assert sidecar["output"]["hash"]["value"] == sha256(job["out"])
    assert sidecar["signature"]["embedded"] == "c2pa" and sidecar["signature"]["test_certificate"] is True
    note = cli._signed_note(sidecar_path(job["out"]))  # what the CLI adds to its "wrote ..." line
    assert note == ", C2PA manifest signed by latentsync_demo test signer (untrusted), an UNTRUSTED TEST certificate"


def test_changing_one_byte_of_the_video_makes_the_manifest_invalid(job, capsys):
    tampered = job["root"] / "tampered.mp4"
    data = bytearray(job["out"].read_bytes())
    data[data.find(b"mdat") + 64] ^= 0xFF  # one byte of the encoded frames
    tampered.write_bytes(bytes(data))
    found = c2pa_embed.read(tampered)
    assert found.state == "Invalid" and "assertion.bmffHash.mismatch" in found.failures
    verify.main([str(tampered), "--max-frames", "1"])
    assert "C2PA manifest: INVALID (assertion.bmffHash.mismatch)" in capsys.readouterr().out


def test_verify_reports_the_manifest_in_json_and_text(job, capsys):
    anchors = job["root"] / "root.pem"
    anchors.write_bytes(job["signing"].trust_anchor)
    code = verify.main([str(job["out"]), "--json", "--trust-anchors", str(anchors)])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and report["c2pa"]["present"] and report["c2pa"]["state"] == "Trusted"
    assert report["c2pa"]["ai_generated"] and report["c2pa"]["test_certificate"]
    verify.main([str(job["out"]), "--max-frames", "1"])
    text = capsys.readouterr().out
    assert "C2PA manifest: signed by latentsync_demo test signer (untrusted)" in text
    assert "UNTRUSTED TEST certificate; the claim says AI-generated" in text
    verify.main([str(job["video"]), "--max-frames", "1"])
    assert "C2PA manifest: none embedded" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # a usage error, not "invalid signature"
        verify.main([str(job["out"]), "--trust-anchors", str(job["audio"])])
    assert exit_info.value.code == 2 and "holds no PEM certificates" in capsys.readouterr().err


def test_side_by_side_video_has_the_same_provenance(job):
    tags = read_metadata(job["compare"])
    assert tags["ai_generated"] == "true" and tags["job_id"] == job["tags"]["job_id"]
    assert tags["layout"] == "original | result" and "Side by side" in tags["comment"]
    sidecar = json.loads(sidecar_path(job["compare"]).read_text())
    assert {i["role"]: i["relationship"] for i in sidecar["ingredients"]} == {
        "video": "parentOf", "audio": "inputTo", "result": "componentOf"}
    assert sidecar["output"]["hash"]["value"] == sha256(job["compare"])
    found = c2pa_embed.read(job["compare"])
    assert found.state == "Valid" and found.ai_generated
    assert ("out.mp4", "componentOf") in {(i["title"], i["relationship"]) for i in found.ingredients}
    assert found.assertions[GENERATION_LABEL]["inputs"]["result"]["sha256"] == sha256(job["out"])


# --- without a job: the fallback, the host's own certificate, the configuration -----------------------------


@pytest.fixture()
def clip(tmp_path):
    video = make_talking_head_clip(tmp_path / "in.mp4", seconds=0.4, fps=25, size=(96, 96))
    out = tmp_path / "out.mp4"
    shutil.copy(video, out)
    tags = container_tags("job123", "latentsync-1.5", GenerationSettings(), "0abc")
    set_metadata(out, tags)  # what a job's mux writes
    return {"video": video, "out": out, "tags": tags, "root": tmp_path}


def test_without_signing_only_tags_and_sidecar(clip):
    stamp(clip["out"], {"video": clip["video"]}, clip["tags"], signing=None)
    assert not c2pa_embed.read(clip["out"]).present
    assert json.loads(sidecar_path(clip["out"]).read_text())["signature"] is None
    assert read_metadata(clip["out"])["job_id"] == "job123"


def test_without_c2pa_installed_the_sidecar_says_so(clip, monkeypatch):
    monkeypatch.setattr(c2pa_embed, "available", lambda: False)
    stamp(clip["out"], {"video": clip["video"]}, clip["tags"], signing=C2paSigning.test_certificate())
    signature = json.loads(sidecar_path(clip["out"]).read_text())["signature"]
    assert signature["embedded"] is None and "not installed" in signature["error"]
    monkeypatch.undo()
    assert not c2pa_embed.read(clip["out"]).present


def test_an_input_c2pa_cannot_read_is_described_by_name(clip):
    fake = clip["root"] / "speech.wav"
    fake.write_text("not really a wav")  # c2pa reads .wav files, but not this one
    stamp(clip["out"], {"video": clip["video"], "audio": fake}, clip["tags"], C2paSigning.test_certificate())
    found = c2pa_embed.read(clip["out"])
    assert found.state == "Valid" and ("speech.wav", "inputTo") in {
        (i["title"], i["relationship"]) for i in found.ingredients}


def test_files_without_room_for_a_manifest_read_as_none(tmp_path):
    notes = tmp_path / "notes.mkv"
    notes.write_text("not an mp4")
    found = c2pa_embed.read(notes)
    assert not found.present and "not an MP4/MOV file" in found.error


def test_a_signing_failure_keeps_the_output_and_records_why(clip):
    test = C2paSigning.test_certificate()
    wrong = C2paSigning(test.cert_chain, test.private_key, "ps256")  # an EC key cannot make RSA-PSS signatures
    stamp(clip["out"], {"video": clip["video"]}, clip["tags"], signing=wrong)
    signature = json.loads(sidecar_path(clip["out"]).read_text())["signature"]
    assert signature["embedded"] is None and "C2PA signing failed" in signature["error"]
    assert read_metadata(clip["out"])["ai_generated"] == "true" and not c2pa_embed.read(clip["out"]).present
    assert not list(clip["root"].glob(".*c2pa-signing"))  # no staged file left behind


def _host_chain(root, self_signed=False):
    """A CA and an RSA signing certificate, as a host would buy them (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP384R1()), rsa.generate_private_key(65537, 2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Host CA")])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Host"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Org")])

    def base(subject, issuer, public):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=2)))

    ca = (base(ca_name, ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA384()))
    leaf = (base(name, name if self_signed else ca_name, key.public_key())
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(key if self_signed else ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (root / "chain.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (root / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                                     serialization.NoEncryption()))
    return root / "chain.pem", root / "key.pem", ca.public_bytes(pem)


def test_host_certificate_from_the_environment_signs_a_trusted_manifest(clip):
    chain, key, root = _host_chain(clip["root"])
    signing = signing_from_env({"LATENTSYNC_C2PA_CERT": str(chain), "LATENTSYNC_C2PA_KEY": key.read_text()})
    assert signing.alg == "ps256" and not signing.test  # from the RSA key; the key given as PEM text
    tags = container_tags("job123", "latentsync-1.5", GenerationSettings(), "0abc", voice="script")
    set_metadata(clip["out"], tags)  # what the job's mux writes
    stamp(clip["out"], {"video": clip["video"]}, tags, signing=signing)
    found = c2pa_embed.read(clip["out"], root)
    assert found.state == "Trusted" and found.signer == "Example Host" and not found.test_certificate
    assert "signing" not in found.assertions[GENERATION_LABEL]  # no test-signing label on a host's manifest
    edited = next(a for a in found.actions if a["action"] == "c2pa.edited")  # cloned speech is said too
    assert edited["parameters"]["voice"] == "script" and "speech was synthesized" in edited["description"]
    assert found.assertions[GENERATION_LABEL]["voice"] == "script" and read_metadata(clip["out"])["voice"] == "script"


def test_signing_configuration_errors_name_the_problem(tmp_path):
    assert signing_from_env({}) is None and signing_from_env({"LATENTSYNC_C2PA": "off"}) is None
    assert signing_from_env({"LATENTSYNC_C2PA": "test"}).test
    assert resolve_signing("test").test and resolve_signing("off") is None  # the app's / CLI's --c2pa
    chain, key, _ = _host_chain(tmp_path)
    with pytest.raises(SigningConfigError, match="both LATENTSYNC_C2PA_CERT and LATENTSYNC_C2PA_KEY"):
        signing_from_env({"LATENTSYNC_C2PA_CERT": str(chain)})
    with pytest.raises(SigningConfigError, match="'maybe'"):
        signing_from_env({"LATENTSYNC_C2PA": "maybe"})
    with pytest.raises(SigningConfigError, match="neither PEM text nor a readable file"):
        C2paSigning.from_pem(tmp_path / "missing.pem", key)
    with pytest.raises(SigningConfigError, match="not the private key of the first certificate"):
        C2paSigning.from_pem(chain, C2paSigning.test_certificate().private_key)
    (tmp_path / "self").mkdir()
    own, own_key, _ = _host_chain(tmp_path / "self", self_signed=True)
    with pytest.raises(SigningConfigError, match="self-signed"):
        C2paSigning.from_pem(own, own_key)


def test_cli_options_choose_the_signer(tmp_path):
    chain, key, _ = _host_chain(tmp_path)
    parse = cli.build_parser().parse_args
    base = ["--video", "v.mp4", "--audio", "a.wav", "--out", "o.mp4"]
    assert cli._c2pa_choice(parse(base)) is None  # the environment decides
    assert cli._c2pa_choice(parse([*base, "--c2pa", "test"])) == "test"
    host = cli._c2pa_choice(parse([*base, "--c2pa-cert", str(chain), "--c2pa-key", str(key)]))
    assert isinstance(host, C2paSigning) and host.alg == "ps256"
    with pytest.raises(SigningConfigError, match="go together"):
        cli._c2pa_choice(argparse.Namespace(c2pa=None, c2pa_cert=str(chain), c2pa_key=None))
