"""Who signs the embedded C2PA manifest: the host's own certificate, a throwaway TEST certificate, or nobody.

Configured by the host (never by a request), read once when the service is created:

- ``LATENTSYNC_C2PA_CERT`` + ``LATENTSYNC_C2PA_KEY``: the host's PEM certificate chain (end-entity first, then
  intermediates) and its private key, each a file path or the PEM text itself (handy for a Space secret).
  ``LATENTSYNC_C2PA_ALG`` (es256 / es384 / es512 / ps256 / ps384 / ps512 / ed25519) defaults to what the key is;
  ``LATENTSYNC_C2PA_TSA_URL`` adds an RFC 3161 time stamp (off by default: it needs the network).
- ``LATENTSYNC_C2PA=test``: a fresh CA + end-entity chain made at start-up. Anyone can make one, so validators
  report it as untrusted; its names say "UNTRUSTED TEST SIGNING" so nobody mistakes it for a real signer.
- ``LATENTSYNC_C2PA=off`` or nothing configured: no embedded manifest (the sidecar JSON and the container tags
  are still written).

C2PA validators only accept an end-entity certificate that is not self-signed, has a critical key usage with
digitalSignature, and an extended key usage such as emailProtection or documentSigning (c2pa-rs's default EKU
list); the test chain below is built that way.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import LatentSyncError

MODE_ENV, CERT_ENV, KEY_ENV, ALG_ENV, TSA_ENV = (
    "LATENTSYNC_C2PA", "LATENTSYNC_C2PA_CERT", "LATENTSYNC_C2PA_KEY", "LATENTSYNC_C2PA_ALG", "LATENTSYNC_C2PA_TSA_URL")
ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")
TEST_ORGANIZATION = "latentsync_demo UNTRUSTED TEST SIGNING"


class SigningConfigError(LatentSyncError, ValueError):
    """The host's C2PA signing configuration cannot be used (the message says which part and how to fix it)."""


@dataclass(frozen=True)
class C2paSigning:
    """A signer for the embedded manifest. ``cert_chain``: PEM, end-entity first; ``private_key``: PEM.
    ``test``: a throwaway test chain (``trust_anchor``: its root, for checking the chain in tests)."""

    cert_chain: bytes
    private_key: bytes
    alg: str
    tsa_url: str | None = None
    test: bool = False
    trust_anchor: bytes | None = None

    @classmethod
    def from_pem(cls, cert: str | bytes | os.PathLike, key: str | bytes | os.PathLike, alg: str | None = None,
                 tsa_url: str | None = None) -> "C2paSigning":
        """The host's chain and key (paths or PEM text); checks they parse and belong together."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        chain, key_pem = _pem(cert, CERT_ENV), _pem(key, KEY_ENV)
        try:
            certs = x509.load_pem_x509_certificates(chain)
        except ValueError as exc:
            raise SigningConfigError(f"{CERT_ENV}: not a PEM certificate chain ({exc})") from exc
        try:
            private = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningConfigError(f"{KEY_ENV}: not an unencrypted PEM private key ({exc})") from exc
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        if (certs[0].public_key().public_bytes(serialization.Encoding.DER, public)
                != private.public_key().public_bytes(serialization.Encoding.DER, public)):
            raise SigningConfigError(f"{KEY_ENV} is not the private key of the first certificate in {CERT_ENV} "
                                     "(the chain must start with the signing, end-entity certificate)")
        if certs[0].issuer == certs[0].subject:
            raise SigningConfigError(f"{CERT_ENV}: C2PA does not accept a self-signed signing certificate; "
                                     "sign it with a CA and append the CA certificate to the chain")
        alg = (alg or _default_alg(private)).lower()
        if alg not in ALGORITHMS:
            raise SigningConfigError(f"{ALG_ENV}={alg!r}: choose one of {', '.join(ALGORITHMS)}")
        # c2pa reads PKCS#8 ("BEGIN PRIVATE KEY") only; "BEGIN RSA/EC PRIVATE KEY" files are common, so convert.
        pkcs8 = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        return cls(chain, pkcs8, alg, tsa_url or None)

    @classmethod
    def test_certificate(cls, days: int = 30) -> "C2paSigning":
        """A fresh ES256 CA + end-entity chain, labelled UNTRUSTED TEST SIGNING (validators: untrusted)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        def name(common: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORGANIZATION),
                              x509.NameAttribute(NameOID.COMMON_NAME, common)])

        def usage(sign: bool) -> x509.KeyUsage:
            return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                                 data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
                                 crl_sign=not sign, encipher_only=False, decipher_only=False)

        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key, signer_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

        def certificate(subject, issuer, public, ca: bool) -> x509.CertificateBuilder:
            return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
                    .serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(minutes=5))
                    .not_valid_after(now + datetime.timedelta(days=days))
                    .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
                    .add_extension(usage(sign=not ca), critical=True)
                    .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))

        root = certificate(name("latentsync_demo test CA (untrusted)"), name("latentsync_demo test CA (untrusted)"),
                           ca_key.public_key(), ca=True).sign(ca_key, hashes.SHA256())
        leaf = (certificate(name("latentsync_demo test signer (untrusted)"), root.subject, signer_key.public_key(),
                            ca=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        key = signer_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        return cls(leaf.public_bytes(pem) + root.public_bytes(pem), key, "es256", test=True,
                   trust_anchor=root.public_bytes(pem))


def signing_from_env(env: Mapping[str, str] | None = None) -> C2paSigning | None:
    """The host's choice (module docstring); None: no embedded manifest."""
    env = os.environ if env is None else env
    mode = env.get(MODE_ENV, "").strip().lower()
    cert, key = env.get(CERT_ENV, "").strip(), env.get(KEY_ENV, "").strip()
    if mode in ("off", "0", "false", "no"):
        return None
    if cert or key:
        if not (cert and key):
            raise SigningConfigError(f"C2PA signing needs both {CERT_ENV} and {KEY_ENV} "
                                     f"(or {MODE_ENV}=test for an untrusted test certificate)")
        return C2paSigning.from_pem(cert, key, env.get(ALG_ENV) or None, env.get(TSA_ENV) or None)
    if mode == "test":
        return C2paSigning.test_certificate()
    if mode:
        raise SigningConfigError(f"{MODE_ENV}={mode!r}: use 'test' (untrusted test certificate) or 'off', or set "
                                 f"{CERT_ENV} and {KEY_ENV} to sign with your own certificate")
    return None


def resolve_signing(choice: "C2paSigning | str | None") -> C2paSigning | None:
    """A service's ``c2pa`` argument: a C2paSigning, "test", "off", or None (the environment decides)."""
    if isinstance(choice, C2paSigning):
        return choice
    if choice is None:
        return signing_from_env()
    return signing_from_env({MODE_ENV: choice})


def _pem(value: str | bytes | os.PathLike, what: str) -> bytes:
    """PEM text as given, or read from the file it names."""
    if isinstance(value, bytes):
        return value
    text = os.fspath(value)
    if "-----BEGIN" in text:
        return text.encode()
    path = Path(text).expanduser()
    if not path.is_file():
        raise SigningConfigError(f"{what}: {text} is neither PEM text nor a readable file")
    return path.read_bytes()


def _default_alg(private_key) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return {256: "es256", 384: "es384", 521: "es512"}.get(private_key.curve.key_size, "es256")
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise SigningConfigError(f"{KEY_ENV}: unsupported key type {type(private_key).__name__}; use EC, RSA or Ed25519")
