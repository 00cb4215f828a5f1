"""The direct PUT's signer (``s3po_client/transfer/sigv4.py``) against botocore's, byte for byte.

botocore's ``S3SigV4Auth`` is the reference: each request is signed by it first, and the
lean signer, given the same request and botocore's timestamp, must add the very same
headers, in the same order, with the same values.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from s3po_client.transfer.sigv4 import PutSigner

KEYS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").get_frozen_credentials()
SESSION = Credentials("ASIAEXAMPLE", "secret/with+chars", "token-of-a-session/==").get_frozen_credentials()
BODY = bytes(range(256)) * 16

ENDPOINTS = [
    "http://127.0.0.1:8333",
    "http://LOCALHOST:80",
    "https://s3.example.com",
    "https://s3.example.com:443/prefix",
    "http://[::1]:9000",
    "http://[fe80::1]",
]
HEADERS: list[dict[str, str]] = [
    {},
    {"Content-MD5": hashlib.md5(BODY).hexdigest()},
    {"x-amz-checksum-crc32": "AAAAAA=="},
    {
        "Content-Type": "text/plain;  charset=utf-8 ",
        "Cache-Control": "max-age=60",
        "x-amz-meta-Owner": "ops  team",
        "x-amz-meta-owner": "second",
        "x-amz-storage-class": "STANDARD_IA",
        "x-amz-server-side-encryption-bucket-key-enabled": "true",
        "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
    },
]
PATHS = [
    "/bucket/key",
    "/bucket/a%20b/c~d/%C3%A9t%C3%A9",
    "/bucket/big?partNumber=12&uploadId=2%2Fabc-_.~",
    "/bucket/big?uploadId=xyz&partNumber=3",
]


def botocore_signed(
    endpoint: str, region: str, path: str, headers: dict[str, str], body: bytes, creds: Any, sign: bool
):
    request = AWSRequest(method="PUT", url=endpoint + path, data=body, headers=dict(headers))
    request.context["client_config"] = Config(s3={"payload_signing_enabled": sign})
    S3SigV4Auth(creds, "s3", region).add_auth(request)
    return list(request.headers.items())


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("headers", HEADERS, ids=["none", "md5", "crc32", "many"])
@pytest.mark.parametrize("path", PATHS, ids=["plain", "quoted", "part", "part-reordered"])
@pytest.mark.parametrize("sign", [False, True], ids=["unsigned-payload", "signed-payload"])
@pytest.mark.parametrize("creds", [KEYS, SESSION], ids=["keys", "session"])
def test_the_lean_signature_is_botocores(
    endpoint: str, headers: dict[str, str], path: str, sign: bool, creds: Any
) -> None:
    expected = botocore_signed(endpoint, "eu-west-3", path, headers, BODY, creds, sign)
    amz_date = dict(expected)["X-Amz-Date"]
    signer = PutSigner(endpoint, "eu-west-3", sign_payload=sign)
    assert list(signer.sign(path, dict(headers), BODY, creds, amz_date).items()) == expected


@pytest.mark.parametrize("sign", [False, True])
def test_an_empty_body_is_signed_as_botocore_signs_it(sign: bool) -> None:
    expected = botocore_signed("http://127.0.0.1:8333", "us-east-1", "/b/empty", {}, b"", KEYS, sign)
    signer = PutSigner("http://127.0.0.1:8333", "us-east-1", sign_payload=sign)
    assert list(signer.sign("/b/empty", {}, b"", KEYS, dict(expected)["X-Amz-Date"]).items()) == expected


def test_the_cached_signing_key_follows_new_credentials_and_a_new_day() -> None:
    """A refreshed secret, or midnight, must not reuse the signing key derived before."""
    signer = PutSigner("http://127.0.0.1:8333", "us-east-1", sign_payload=False)
    rotated = Credentials("AKIDEXAMPLE", "another-secret").get_frozen_credentials()
    for creds, amz_date in [
        (KEYS, "20261207T235959Z"),
        (KEYS, "20261208T000001Z"),
        (rotated, "20261208T000002Z"),
        (KEYS, "20261208T000003Z"),
    ]:
        request = AWSRequest(method="PUT", url="http://127.0.0.1:8333/b/k", data=BODY, headers={})
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
        request.context["timestamp"] = amz_date
        auth = S3SigV4Auth(creds, "s3", "us-east-1")
        auth._modify_request_before_signing(request)
        expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        signed = signer.sign("/b/k", {}, BODY, creds, amz_date)
        assert signed["Authorization"].endswith(f"Signature={expected}")


def test_a_part_held_in_a_memoryview_is_signed_as_its_bytes() -> None:
    expected = botocore_signed("http://127.0.0.1:8333", "us-east-1", PATHS[2], {}, BODY, KEYS, True)
    signer = PutSigner("http://127.0.0.1:8333", "us-east-1", sign_payload=True)
    view = memoryview(bytearray(BODY))
    assert list(signer.sign(PATHS[2], {}, view, KEYS, dict(expected)["X-Amz-Date"]).items()) == expected
